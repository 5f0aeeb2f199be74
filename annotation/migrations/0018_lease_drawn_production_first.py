"""Install the queue functions as annotation/queue_functions_sql.py has them now (PostgreSQL only).

Written by ``manage.py queue_functions_migration``. QUEUE_FUNCTIONS_SQL and
QUEUE_FUNCTIONS_DROP are a frozen copy: never edit them (a database that ran this migration
would not see the edit); edit annotation/queue_functions_sql.py and write a new migration.
Forwards drops the functions 0014_lease_returns_origin installed and creates these;
backwards drops these and creates 0014_lease_returns_origin's again.
"""
import importlib

from django.db import migrations

PREVIOUS = importlib.import_module("annotation.migrations.0014_lease_returns_origin")

QUEUE_FUNCTIONS_SQL = (
    r"""
CREATE OR REPLACE FUNCTION annotation_lease_next(
    p_project bigint, p_annotator integer, p_test_fraction double precision,
    p_now timestamptz, p_expires timestamptz, p_asynchronous_commit boolean
) RETURNS TABLE (
    id bigint, project_id bigint, external_id varchar, text text, "values" jsonb,
    image varchar, split varchar, origin varchar, lease_expires timestamptz
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
-- sample_lease_next for overlap 1. Each statement takes a fresh snapshot (READ
-- COMMITTED), so the recheck after FOR UPDATE SKIP LOCKED sees leases committed since
-- the candidate was read, as the Python path's separate statement does.
DECLARE
    v_sample bigint;
    v_expires timestamptz;
    v_held bigint;
    v_held_expires timestamptz;
    v_pool integer;
    v_test integer;
    v_split varchar;
BEGIN
    IF p_asynchronous_commit THEN
        -- A lease is not a label: losing the last ones in a crash only frees their samples.
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    -- The sample the annotator holds a live lease on, the most recently leased first.
    -- The label check runs per held sample (a handful at most): written as one anti-join,
    -- the planner scanned all of the annotator's labels for it.
    FOR v_held, v_held_expires IN
        SELECT l.sample_id, l.expires_at
          FROM annotation_lease l JOIN annotation_sample s ON s.id = l.sample_id
         WHERE l.project_id = p_project AND l.annotator_id = p_annotator
           AND l.expires_at > p_now AND NOT l.skipped AND s.status = 'unlabeled'
         ORDER BY l.created_at DESC, l.id DESC
    LOOP
        IF NOT EXISTS (SELECT 1 FROM annotation_label b WHERE b.sample_id = v_held
                       AND b.annotator_id = p_annotator AND b.superseded_at IS NULL) THEN
            v_sample := v_held;
            v_expires := v_held_expires;
            EXIT;
        END IF;
    END LOOP;
    IF v_sample IS NULL THEN
        SELECT c.labeled_pool, c.labeled_test INTO v_pool, v_test
          FROM annotation_labelcounts c WHERE c.project_id = p_project;
        v_pool := coalesce(v_pool, 0);
        v_test := coalesce(v_test, 0);
        <<splits>>
        -- Test first while the labeled test split is under its share, or while production
        -- inputs a rule drew at random (held out, negative random_key) wait in it.
        FOREACH v_split IN ARRAY CASE WHEN v_test < p_test_fraction * (v_pool + v_test + 1)
                                        OR EXISTS (SELECT 1 FROM annotation_sample s
                                                    WHERE s.project_id = p_project
                                                      AND s.split = 'test'
                                                      AND s.status = 'unlabeled'
                                                      AND s.random_key < 0)
                                      THEN ARRAY['test', 'pool'] ELSE ARRAY['pool', 'test'] END
        LOOP
            FOR attempt IN 1..3 LOOP
                -- The first free sample in queue order; rows others are leasing now are
                -- skipped, not waited for.
                IF v_split = 'test' THEN
                    SELECT s.id INTO v_sample FROM annotation_sample s
                     WHERE s.project_id = p_project AND s.split = v_split AND s.status = 'unlabeled'
                       AND NOT EXISTS (SELECT 1 FROM annotation_lease l WHERE l.sample_id = s.id
                                       AND l.annotator_id = p_annotator)
                       AND NOT EXISTS (SELECT 1 FROM annotation_lease l WHERE l.sample_id = s.id
                                       AND l.expires_at > p_now AND NOT l.skipped)
                     ORDER BY s.random_key LIMIT 1 FOR UPDATE OF s SKIP LOCKED;
                ELSE
                    SELECT s.id INTO v_sample FROM annotation_sample s
                     WHERE s.project_id = p_project AND s.split = v_split AND s.status = 'unlabeled'
                       AND NOT EXISTS (SELECT 1 FROM annotation_lease l WHERE l.sample_id = s.id
                                       AND l.annotator_id = p_annotator)
                       AND NOT EXISTS (SELECT 1 FROM annotation_lease l WHERE l.sample_id = s.id
                                       AND l.expires_at > p_now AND NOT l.skipped)
                     ORDER BY s.score DESC, s.random_key LIMIT 1 FOR UPDATE OF s SKIP LOCKED;
                END IF;
                -- The recheck: none of the annotator's leases, no live one of anybody's.
                IF v_sample IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM annotation_lease l WHERE l.sample_id = v_sample
                       AND (l.annotator_id = p_annotator
                            OR (l.expires_at > p_now AND NOT l.skipped))
                ) THEN
                    v_expires := p_expires;
                    INSERT INTO annotation_lease
                           (sample_id, annotator_id, project_id, expires_at, skipped, created_at)
                    VALUES (v_sample, p_annotator, p_project, p_expires, false, p_now)
                    ON CONFLICT (sample_id, annotator_id) DO UPDATE SET
                           project_id = excluded.project_id, expires_at = excluded.expires_at,
                           skipped = excluded.skipped, created_at = excluded.created_at;
                    EXIT splits;
                END IF;
                v_sample := NULL;
                -- Nothing taken: try again only while a free sample exists, locked or not.
                EXIT WHEN NOT EXISTS (SELECT 1 FROM annotation_sample s WHERE s.project_id = p_project AND s.split = v_split AND s.status = 'unlabeled'
                       AND NOT EXISTS (SELECT 1 FROM annotation_lease l WHERE l.sample_id = s.id
                                       AND l.annotator_id = p_annotator)
                       AND NOT EXISTS (SELECT 1 FROM annotation_lease l WHERE l.sample_id = s.id
                                       AND l.expires_at > p_now AND NOT l.skipped));
            END LOOP;
        END LOOP;
    END IF;
    RETURN QUERY
        SELECT s.id, s.project_id, s.external_id, s.text, s."values", s.image, s.split, s.origin,
               v_expires
          FROM annotation_sample s WHERE s.id = v_sample;
END
$$;
""",
    r"""
CREATE OR REPLACE FUNCTION annotation_label_submit(
    p_project bigint, p_sample bigint, p_annotator integer, p_value varchar,
    p_duration_ms integer, p_suggested_version integer, p_overlap integer, p_now timestamptz
) RETURNS TABLE (
    outcome text, label_id bigint, label_value varchar, label_duration_ms integer,
    label_created_at timestamptz, label_is_correction boolean, label_served_version integer,
    label_suggested_version integer, current_labels integer, counted_from integer
) LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
-- label_submit after its role and value checks. outcome: not_found, existing (the
-- annotator's current label, whatever its value), already_labeled, not_given (a held-out
-- test sample never leased to the annotator), leased, no_counts
-- (nothing written: the caller takes the Python path, which creates the counter row),
-- created (with the new counter and the newest model version's
-- requested_at_label_count, for the retrain-due check). The label records the served
-- version and p_suggested_version, but none on a held-out test sample (shown none).
DECLARE
    v_split varchar;
    v_status varchar;
    v_count integer;
    v_live integer;
    v_my_live integer;
    v_given integer;
    v_label bigint;
    v_done boolean;
    v_from integer;
    v_current integer;
    v_served integer;
    v_suggested integer;
    v_mine annotation_label%ROWTYPE;
BEGIN
    SELECT s.split, s.status, s.label_count INTO v_split, v_status, v_count
      FROM annotation_sample s WHERE s.id = p_sample AND s.project_id = p_project FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::bigint, NULL::varchar, NULL::integer,
                            NULL::timestamptz, NULL::boolean, NULL::integer, NULL::integer,
                            NULL::integer, NULL::integer;
        RETURN;
    END IF;
    -- Statements after the lock see labels and leases committed while it was awaited.
    SELECT * INTO v_mine FROM annotation_label b
     WHERE b.sample_id = p_sample AND b.annotator_id = p_annotator AND b.superseded_at IS NULL;
    IF FOUND THEN
        RETURN QUERY SELECT 'existing', v_mine.id, v_mine.value, v_mine.duration_ms,
                            v_mine.created_at, v_mine.is_correction, v_mine.served_version,
                            v_mine.suggested_version, NULL::integer, NULL::integer;
        RETURN;
    END IF;
    IF v_status = 'labeled' THEN
        RETURN QUERY SELECT 'already_labeled', NULL::bigint, NULL::varchar, NULL::integer,
                            NULL::timestamptz, NULL::boolean, NULL::integer, NULL::integer,
                            NULL::integer, NULL::integer;
        RETURN;
    END IF;
    SELECT count(*) FILTER (WHERE l.expires_at > p_now),
           count(*) FILTER (WHERE l.expires_at > p_now AND l.annotator_id = p_annotator),
           count(*) FILTER (WHERE l.annotator_id = p_annotator)
      INTO v_live, v_my_live, v_given
      FROM annotation_lease l
     WHERE l.sample_id = p_sample AND NOT l.skipped;
    IF v_split = 'test' AND v_given = 0 THEN
        RETURN QUERY SELECT 'not_given', NULL::bigint, NULL::varchar, NULL::integer,
                            NULL::timestamptz, NULL::boolean, NULL::integer, NULL::integer,
                            NULL::integer, NULL::integer;
        RETURN;
    END IF;
    IF v_my_live = 0 AND v_count + v_live >= p_overlap THEN
        RETURN QUERY SELECT 'leased', NULL::bigint, NULL::varchar, NULL::integer,
                            NULL::timestamptz, NULL::boolean, NULL::integer, NULL::integer,
                            NULL::integer, NULL::integer;
        RETURN;
    END IF;
    PERFORM 1 FROM annotation_labelcounts c WHERE c.project_id = p_project;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_counts', NULL::bigint, NULL::varchar, NULL::integer,
                            NULL::timestamptz, NULL::boolean, NULL::integer, NULL::integer,
                            NULL::integer, NULL::integer;
        RETURN;
    END IF;
    -- The ledger's served_version (the served_model hook): read here, in the same call.
    SELECT m.number INTO v_served FROM learning_modelversion m
     WHERE m.project_id = p_project AND m.is_served;
    v_suggested := CASE WHEN v_split = 'test' THEN NULL ELSE p_suggested_version END;
    INSERT INTO annotation_label
           (sample_id, annotator_id, value, duration_ms, created_at, superseded_at, is_correction,
            served_version, suggested_version)
    VALUES (p_sample, p_annotator, p_value, p_duration_ms, p_now, NULL, false, v_served,
            v_suggested)
    RETURNING annotation_label.id INTO v_label;
    v_done := v_count + 1 >= p_overlap;
    UPDATE annotation_sample
       SET label_count = v_count + 1,
           status = CASE WHEN v_done THEN 'labeled' ELSE 'unlabeled' END
     WHERE annotation_sample.id = p_sample;
    DELETE FROM annotation_lease l WHERE l.sample_id = p_sample AND l.annotator_id = p_annotator;
    -- Last: the counter row stays locked until commit, queueing concurrent label writers.
    UPDATE annotation_labelcounts c
       SET current_labels = c.current_labels + 1,
           labeled_pool = c.labeled_pool + (v_done AND v_split <> 'test')::integer,
           labeled_test = c.labeled_test + (v_done AND v_split = 'test')::integer
     WHERE c.project_id = p_project
    RETURNING c.current_labels INTO v_current;
    IF NOT FOUND THEN  -- deleted since the look above: only with the project itself
        RAISE EXCEPTION 'label counts of project % vanished', p_project;
    END IF;
    -- Read after the counter's lock was granted: a busy project's writers queue there,
    -- and a start of the batch read before the wait would be stale for most of them
    -- (each would then take the retrain-due check's slow path).
    SELECT m.requested_at_label_count INTO v_from FROM learning_modelversion m
     WHERE m.project_id = p_project ORDER BY m.number DESC LIMIT 1;
    RETURN QUERY SELECT 'created', v_label, p_value, p_duration_ms, p_now, false, v_served,
                        v_suggested, v_current, coalesce(v_from, 0);
END
$$;
""",
)

QUEUE_FUNCTIONS_DROP = (
    'DROP FUNCTION IF EXISTS annotation_lease_next(bigint, integer, double precision, timestamptz, timestamptz, boolean)',
    'DROP FUNCTION IF EXISTS annotation_label_submit(bigint, bigint, integer, varchar, integer, integer, integer, timestamptz)',
)


def _run(*groups):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return  # other databases keep the Python paths of annotation.services
        for statements in groups:
            for statement in statements:
                schema_editor.execute(statement, params=None)  # no placeholders: % is literal

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0017_settings_change_featurizer"),
        ("learning", "0009_strategy_mix"),  # the functions read learning tables too
    ]

    operations = [
        migrations.RunPython(
            _run(PREVIOUS.QUEUE_FUNCTIONS_DROP, QUEUE_FUNCTIONS_SQL),
            _run(QUEUE_FUNCTIONS_DROP, PREVIOUS.QUEUE_FUNCTIONS_SQL),
        ),
    ]
