-- The all-zero collection keeps no history (PROTOCOL.md §11.16): the diary's key bundle lives
-- there, and a replaced bundle still opens with the password or recovery codes it was wrapped
-- under. Writes replace an item's earlier revisions from now on; this drops those stored before
-- the rule and recounts the bytes of the accounts concerned. Idempotent.
DELETE FROM vault_revisions
WHERE collection_id = decode('00000000000000000000000000000000', 'hex')
  AND revision < (SELECT i.revision FROM vault_items i
                  WHERE i.account_id = vault_revisions.account_id
                    AND i.collection_id = vault_revisions.collection_id
                    AND i.item_id = vault_revisions.item_id);

UPDATE vault_accounts
SET byte_count = (SELECT COALESCE(SUM(r.size_bytes), 0) FROM vault_revisions r
                  WHERE r.account_id = vault_accounts.account_id)
WHERE account_id IN (SELECT account_id FROM vault_items
                     WHERE collection_id = decode('00000000000000000000000000000000', 'hex'));
