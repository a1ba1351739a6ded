-- 008_reserved.sql - a placeholder holding number 008 for a migration of
-- another branch, so that this branch's migrations stay numbered 1..N.
-- It changes nothing; the branch that owns number 008 replaces it.
SELECT 1;
