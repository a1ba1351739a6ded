-- 009_reserved.sql - a placeholder holding number 009 for a migration of
-- another branch, so that this branch's migrations stay numbered 1..N.
-- It changes nothing; the branch that owns number 009 replaces it.
SELECT 1;
