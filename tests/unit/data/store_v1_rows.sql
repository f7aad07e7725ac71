-- Rows as Deckhand at commit 6dc736f wrote them, one request in each state it could leave in a
-- file, with approvals, audit entries and delivery keys. Loaded after store_v1.sql.
INSERT INTO requests (id, verb, args, workload, environment, namespace, requester, team, channel,
                      message_ts, thread_ts, state, plan, approvals_required, created_at,
                      expires_at, updated_at, result) VALUES
  ('pending00001', 'deploy', '{"workload": "cardano-node", "environment": "production", "image": "x:2"}',
   'cardano-node', 'production', 'cardano', 'UREQ', 'T1', 'C1', '1700000000.000100', NULL,
   'pending', '{"summary": ["image x:1 -> x:2"], "target": {"name": "cardano-node"}}', 1,
   1700000000.0, 1700001800.0, 1700000000.0, NULL),
  ('confirmed001', 'scale', '{"workload": "cardano-node", "environment": "production", "replicas": 2}',
   'cardano-node', 'production', 'cardano', 'UREQ', 'T1', 'C1', '1700000010.000100', NULL,
   'confirmed', '{"summary": ["replicas 1 -> 2"]}', 2,
   1700000010.0, 1700001810.0, 1700000020.0, NULL),
  ('approved0001', 'restart', '{"workload": "cardano-node", "environment": "staging"}',
   'cardano-node', 'staging', 'cardano-staging', 'UREQ', 'T1', 'C2', '1700000030.000100',
   '1699999999.000100', 'approved', '{"summary": ["restart"]}', 0,
   1700000030.0, 1700000630.0, 1700000031.0, NULL),
  ('executing001', 'deploy', '{"workload": "cardano-node", "environment": "staging", "image": "x:3"}',
   'cardano-node', 'staging', 'cardano-staging', 'UREQ', 'T1', 'C2', '1700000040.000100', NULL,
   'executing', '{"summary": ["image x:2 -> x:3"]}', 0,
   1700000040.0, 1700000640.0, 1700000041.0, NULL),
  ('succeeded001', 'deploy', '{"workload": "cardano-node", "environment": "staging", "image": "x:2"}',
   'cardano-node', 'staging', 'cardano-staging', 'UREQ', 'T1', 'C2', '1699990000.000100', NULL,
   'succeeded', '{"summary": ["image x:1 -> x:2"]}', 0,
   1699990000.0, 1699990600.0, 1699990100.0,
   '{"ok": true, "message": "applied; rolled out", "rollback_offer": false}'),
  ('failed000001', 'deploy', '{"workload": "cardano-node", "environment": "production", "image": "x:9"}',
   'cardano-node', 'production', 'cardano', 'UREQ', 'T1', 'C1', '1699980000.000100', NULL,
   'failed', '{"summary": ["image x:1 -> x:9"]}', 1,
   1699980000.0, 1699981800.0, 1699980700.0,
   '{"ok": false, "message": "rollout did not finish within 600 s", "rollback_offer": true}'),
  ('cancelled001', 'rollback', '{"workload": "cardano-node", "environment": "staging"}',
   'cardano-node', 'staging', 'cardano-staging', 'UREQ', 'T1', 'C2', '1699970000.000100', NULL,
   'cancelled', '{"summary": ["rollback to revision 3"]}', 0,
   1699970000.0, 1699970600.0, 1699970005.0, NULL),
  ('rejected0001', 'scale', '{"workload": "cardano-node", "environment": "production", "replicas": 0}',
   'cardano-node', 'production', 'cardano', 'UREQ', 'T1', 'C1', '1699960000.000100', NULL,
   'rejected', '{"summary": ["replicas 1 -> 0"]}', 1,
   1699960000.0, 1699961800.0, 1699960050.0, NULL),
  ('expired00001', 'restart', '{"workload": "cardano-node", "environment": "production"}',
   'cardano-node', 'production', 'cardano', 'UREQ', 'T1', 'C1', '1699950000.000100', NULL,
   'expired', '{"summary": ["restart"]}', 1,
   1699950000.0, 1699951800.0, 1699951801.0, NULL);

INSERT INTO approvals (request_id, user_id, at) VALUES
  ('confirmed001', 'UAPP1', 1700000020.0),
  ('failed000001', 'UAPP2', 1699980010.0);

INSERT INTO audit (at, event, request_id, user_id, team_id, action, args, environment, workload,
                   result, detail) VALUES
  (1699980000.0, 'requested', 'failed000001', 'UREQ', 'T1', 'deploy',
   '{"workload": "cardano-node", "environment": "production", "image": "x:9"}', 'production',
   'cardano-node', NULL, 'image x:1 -> x:9'),
  (1699980005.0, 'confirmed', 'failed000001', 'UREQ', 'T1', 'deploy', NULL, 'production',
   'cardano-node', NULL, NULL),
  (1699980010.0, 'approved', 'failed000001', 'UAPP2', 'T1', 'deploy', NULL, 'production',
   'cardano-node', NULL, NULL),
  (1699980700.0, 'failed', 'failed000001', 'UREQ', 'T1', 'deploy', NULL, 'production',
   'cardano-node', 'failed', 'rollout did not finish within 600 s'),
  (1699990000.0, 'denied', NULL, 'UOTHER', 'T2', 'deploy', '{"text": "cardano-node production"}',
   NULL, NULL, NULL, 'request from another workspace');

INSERT INTO deliveries (key, at) VALUES
  ('command:111.222.aaa', 1699000000.0),
  ('command:333.444.bbb', 1700000000.0);
