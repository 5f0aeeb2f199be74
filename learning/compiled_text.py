"""A fitted vocabulary ``TextFeaturizer`` compiled for the hot paths (see
``learning/compiled_features.py``, which checks it against the featurizer before use).

Each vectorizer becomes a function from a batch of texts to the vocabulary columns of their
terms, one per occurrence, as one numpy array; the batch's counts, sublinear tf, idf and
norms are then computed at once with numpy, and the blocks are laid side by side into one
CSR matrix, the one ``FeatureUnion`` would have made. No Django imports.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from learning import features

WORD_CACHE_SIZE = 200000  # words whose character n-gram columns a text block remembers
# A batch's terms are counted with a tally of every (text, column) cell when the cells are
# at most this many times the terms (narrow vocabularies such as character n-grams: one
# pass, no sort; 100 texts against 3,800 columns took 1.0 ms instead of np.unique's 2.3),
# else by sorting their keys.
TALLY_CELLS_PER_TERM = 8
_NONE = np.empty(0, dtype=np.int64)

# texts -> (the columns of their terms, one per occurrence; how many of them each text has)
TermColumns = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]


def _per_text(text_columns: Callable[[str], list[int]]) -> TermColumns:
    """A batch function from a function giving one text's columns as a list."""
    def batch(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        flat: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.int64)
        for i, text in enumerate(texts):
            before = len(flat)
            flat.extend(text_columns(text))
            lengths[i] = len(flat) - before
        return np.asarray(flat, dtype=np.int64), lengths

    return batch


def term_columns(vec) -> TermColumns:
    """Return texts -> the vocabulary columns of their terms, one per occurrence.

    Character n-grams within word boundaries (``char_wb``) depend on the word alone, so
    each distinct word's columns are computed once and remembered as an array: words
    repeat, generating n-grams in Python is most of a text's cost, and a batch's arrays are
    joined in one call. Word n-grams are made as sklearn's analyzer makes them, with
    comprehensions. Any other configuration uses sklearn's own analyzer.
    """
    vocabulary = dict(zip(vec.vocabulary_, map(int, vec.vocabulary_.values())))  # not np.int64
    find = vocabulary.get
    plain = (vec.preprocessor is None and vec.input == "content" and vec.strip_accents is None
             and vec.tokenizer is None)
    lower = vec.lowercase
    lo, hi = vec.ngram_range
    if plain and vec.analyzer == "word" and vec.stop_words is None:
        pattern = re.compile(vec.token_pattern)
        if pattern.groups > 1:
            raise TypeError("a token pattern with more than one group")

        def word_columns(text: str) -> list[int]:
            tokens = pattern.findall(text.lower() if lower else text)
            terms = tokens if lo <= 1 else []
            for n in range(max(lo, 2), hi + 1):
                terms = terms + ([f"{a} {b}" for a, b in zip(tokens, tokens[1:])] if n == 2 else
                                 [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)])
            return [c for c in map(find, terms) if c is not None]

        return _per_text(word_columns)
    if not (plain and vec.analyzer == "char_wb"):
        analyze = vec.build_analyzer()
        return _per_text(lambda text: [c for c in map(find, analyze(text)) if c is not None])
    words: dict[str, np.ndarray] = {}

    def columns(word: str) -> np.ndarray:
        padded = f" {word} "
        size = len(padded)
        grams = []
        for n in range(lo, hi + 1):
            if n >= size:  # sklearn counts a short padded word once, then stops
                grams.append(padded)
                break
            grams.extend([padded[i:i + n] for i in range(size - n + 1)])
        found = np.array([c for c in map(find, grams) if c is not None], dtype=np.int64)
        if len(words) >= WORD_CACHE_SIZE:
            words.clear()
        words[word] = found
        return found

    def char_columns(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        parts: list[np.ndarray] = []
        lengths = np.zeros(len(texts), dtype=np.int64)
        get = words.get
        for i, text in enumerate(texts):
            start = len(parts)
            for word in (text.lower() if lower else text).split():
                found = get(word)
                parts.append(columns(word) if found is None else found)
            lengths[i] = sum(map(len, parts[start:]))
        return (np.concatenate(parts) if parts else _NONE), lengths

    return char_columns


class LeanText:
    """The transform of a fitted vocabulary ``TextFeaturizer``: term counts, idf, norms."""

    kind = "text"

    def __init__(self, featurizer: features.TextFeaturizer):
        self.blocks = []
        for _name, vec in featurizer.union_.transformer_list:
            if type(vec) is not TfidfVectorizer or not vec.use_idf or vec.binary:
                raise TypeError(f"cannot compile {type(vec).__name__}")
            self.blocks.append((term_columns(vec), np.asarray(vec.idf_, dtype=np.float64),
                                vec.sublinear_tf, vec.norm, len(vec.idf_)))
        self.width = sum(block[-1] for block in self.blocks)
        self.vocabulary = featurizer.union_.transformer_list[0][1].vocabulary_

    def __call__(self, texts, *, strict: bool = False) -> sp.csr_matrix:
        """Transform texts (None and NaN are empty) into their TF-IDF rows."""
        texts = features.text_list(texts)
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        indices, data = _NONE, np.empty(0)
        offset = 0
        for block in self.blocks:  # each block's columns follow the previous blocks'
            more_indptr, more_indices, more_data = self._block(texts, *block)
            indptr, indices, data = _side_by_side(indptr, indices, data, more_indptr,
                                                  more_indices + offset, more_data)
            offset += block[-1]
        return sp.csr_matrix((data, indices, indptr), shape=(len(texts), self.width))

    @staticmethod
    def _block(texts, columns, idf, sublinear, norm, width
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One vectorizer's rows as CSR arrays (indptr, indices, data): the batch's term
        columns counted at once with numpy."""
        flat, lengths = columns(texts)
        keys = np.repeat(np.arange(len(texts), dtype=np.int64) * width, lengths)
        keys += flat
        keys, counts = _counted(keys, len(texts) * width)  # sorted: row, then column
        rows, indices = np.divmod(keys, width)
        indptr = np.searchsorted(rows, np.arange(len(texts) + 1))
        data = counts.astype(np.float64)
        if sublinear:
            np.log(data, out=data)
            data += 1.0
        data *= idf[indices]
        if norm in ("l1", "l2") and len(data):
            lengths = np.diff(indptr)
            starts = indptr[:-1][lengths > 0]
            per_row = np.add.reduceat(data * data if norm == "l2" else np.abs(data), starts)
            if norm == "l2":
                np.sqrt(per_row, out=per_row)
            data /= np.repeat(per_row, lengths[lengths > 0])
        return indptr, indices, data


def _counted(keys: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys (``text * width + column``, below ``cells``) in order, and how
    often each occurs: ``np.unique(keys, return_counts=True)``, faster."""
    if cells <= TALLY_CELLS_PER_TERM * len(keys):
        tally = np.bincount(keys, minlength=cells)
        found = np.flatnonzero(tally)
        return found, tally[found]
    if not len(keys):
        return keys, keys.copy()
    ordered = np.sort(keys.astype(np.int32) if cells <= np.iinfo(np.int32).max else keys)
    first = np.empty(len(ordered), dtype=bool)  # where a run of equal keys starts
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return ordered[starts].astype(np.int64), np.diff(starts, append=len(ordered))


def _side_by_side(indptr, indices, data, more_indptr, more_indices, more_data):
    """The CSR arrays of two matrices of the same rows laid side by side (``hstack``): in
    each row the first one's entries, then the second's."""
    if not len(data):
        return more_indptr, more_indices, more_data
    first, second = np.diff(indptr), np.diff(more_indptr)
    out = np.empty(len(data) + len(more_data), dtype=np.int64)
    # Entry j of the first in row r moves by the second's entries in earlier rows; entry j
    # of the second by the first's entries in rows up to and including r.
    at_first = np.arange(len(data)) + np.repeat(more_indptr[:-1], first)
    at_second = np.arange(len(more_data)) + np.repeat(indptr[1:], second)
    out[at_first], out[at_second] = indices, more_indices
    values = np.empty(len(out))
    values[at_first], values[at_second] = data, more_data
    return indptr + more_indptr, out, values


def probe_texts(lean: LeanText) -> list:
    words = [term for term in list(lean.vocabulary)[:40]]
    return ["", None, " ".join(words), " ".join(reversed(words[:7])) + " zzqx unseen",
            "The Same WORD word word. Again!", *words[:5]]
