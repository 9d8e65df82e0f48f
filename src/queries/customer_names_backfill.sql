-- Customers projected before these triggers existed: the same name the insert trigger gives.
UPDATE rm_customer c SET party_name = n.party_name
FROM (
    SELECT u.account_id, u.id, coalesce(
        (SELECT p.name FROM rm_person p WHERE p.account_id = u.account_id AND p.id = u.party_id),
        (SELECT o.name FROM rm_organisation o WHERE o.account_id = u.account_id AND o.id = u.party_id)
    ) AS party_name
    FROM rm_customer u
    WHERE u.party_name IS NULL
) n
WHERE c.account_id = n.account_id AND c.id = n.id AND c.party_name IS NULL AND n.party_name IS NOT NULL;
