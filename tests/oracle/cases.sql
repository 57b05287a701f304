-- The oracle's own cases: statements chosen to hide what they read or write, checked
-- against the server by tests/tests/oracle.rs (schema: SAMPLE_SCHEMA plus
-- tests/oracle/schema.sql). One statement per `;`, psql style.

-- The bypasses that started this.
EXPLAIN (ANALYZE 1) DELETE FROM orders;
SELECT e, k FROM customers AS c(i, n, e, k);
SELECT j.card_number FROM (customers JOIN orders ON customers.id = orders.customer_id) AS j;
SELECT b.card_number FROM customers a JOIN customers b USING (card_number) AS j;
SELECT j::text FROM (customers JOIN orders ON customers.id = orders.customer_id) AS j;
SELECT histogram_bounds, most_common_vals FROM pg_stats WHERE tablename = 'customers';

-- Column alias lists.
SELECT x FROM customers c(x);
SELECT c.e FROM customers c(i, n, e);
SELECT card_number FROM customers c(i, n, e);
SELECT s.x FROM (SELECT email, card_number FROM customers) AS s(x);
SELECT s.y FROM (SELECT email, card_number FROM customers) AS s(x, y);
SELECT y FROM (SELECT * FROM customers) AS s(a, b, c, y);
SELECT v.b FROM (VALUES (1, 'a')) AS v(a, b);
SELECT g.n FROM generate_series(1, 3) AS g(n);
SELECT u.x FROM unnest(ARRAY['a', 'b']) WITH ORDINALITY AS u(x, i);
SELECT r.a FROM ROWS FROM (generate_series(1, 2), unnest(ARRAY['x'])) AS r(a, b);
SELECT p.y FROM pair() AS p;
SELECT q.b FROM pair() AS q(a, b);
SELECT ac.email FROM all_customers() AS ac;
SELECT z.k FROM all_customers() AS z(i, n, e, k);

-- Joins: USING, NATURAL, nested aliases.
SELECT card_number FROM customers JOIN customers c2 USING (id);
SELECT * FROM customers NATURAL JOIN other.customers;
SELECT secret FROM customers NATURAL JOIN other.customers;
SELECT id FROM customers JOIN other.customers USING (id);
SELECT x.id FROM customers JOIN other.customers USING (id) AS x;
SELECT k.email FROM ((customers JOIN orders ON customers.id = orders.customer_id) AS j JOIN t ON t.id = j.customer_id) AS k;
SELECT j.email FROM (customers c JOIN orders o ON c.id = o.customer_id) j;
SELECT j.* FROM (customers c JOIN orders o ON c.id = o.customer_id) j;
SELECT * FROM (customers c JOIN orders o ON c.id = o.customer_id) j;
SELECT j FROM (customers c JOIN orders o ON c.id = o.customer_id) j;
SELECT row_to_json(j) FROM (customers c JOIN orders o ON c.id = o.customer_id) j;
SELECT amount FROM customers c LEFT JOIN orders o ON o.customer_id = c.id;
SELECT email FROM orders o RIGHT JOIN customers c ON o.customer_id = c.id;
SELECT * FROM customers c FULL JOIN orders o USING (id);
SELECT 1 FROM customers c CROSS JOIN orders o WHERE o.status = c.name;

-- LATERAL and set-returning functions.
SELECT l.email FROM orders o, LATERAL (SELECT * FROM customers c WHERE c.id = o.customer_id) l;
SELECT l.m FROM customers c, LATERAL (SELECT c.card_number AS m) l;
SELECT x FROM customers c, LATERAL unnest(ARRAY[c.email, c.card_number]) AS x;
SELECT * FROM customers c JOIN LATERAL (SELECT o.amount FROM orders o WHERE o.customer_id = c.id LIMIT 1) l ON true;
SELECT generate_series(1, c.id), c.card_number FROM customers c;
SELECT (SELECT string_agg(card_number, ',') FROM customers);

-- Whole-row references.
SELECT t FROM customers t;
SELECT t.* FROM customers t;
SELECT t::text FROM customers t;
SELECT row_to_json(t) FROM customers t;
SELECT customers FROM customers;
SELECT (customers).card_number FROM customers;
SELECT (c).email FROM customers c;
SELECT c.card_tail FROM customers c;
SELECT card_tail(c) FROM customers c;
SELECT to_jsonb(c) -> 'email' FROM customers c;
SELECT count(*) FROM customers;
SELECT count(c) FROM customers c;
SELECT 1 FROM customers WHERE customers IS NOT NULL;
SELECT hstore_like FROM (SELECT c::text AS hstore_like FROM customers c) x;
SELECT (s.dest).city, s.tags[1] FROM shipments s;
SELECT dest FROM shipments;

-- CTEs with column alias lists.
WITH x(a, b) AS (SELECT email, card_number FROM customers) SELECT b FROM x;
WITH x(a) AS (SELECT card_number, email FROM customers) SELECT email FROM x;
WITH x AS (SELECT * FROM customers) SELECT x.card_number FROM x;
WITH x AS MATERIALIZED (SELECT * FROM customers) SELECT count(*) FROM x;
WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers UNION ALL SELECT n + 1, e FROM r WHERE n < 2) SELECT e FROM r;
WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING *) SELECT * FROM d;
WITH u AS (UPDATE customers SET name = 'x' WHERE id = 1 RETURNING card_number) SELECT * FROM u;
WITH i AS (INSERT INTO t SELECT id, email, 1 FROM customers RETURNING *) SELECT v FROM i;
WITH customers AS (SELECT 1 AS card_number) SELECT card_number FROM customers;
WITH a AS (SELECT * FROM customers), b AS (SELECT * FROM a) SELECT card_number FROM b;

-- Write statements.
UPDATE customers SET email = o.status FROM orders o WHERE o.customer_id = customers.id;
UPDATE customers c SET (name, email) = (SELECT status, status FROM orders o WHERE o.id = c.id);
UPDATE customers SET name = card_number;
UPDATE customers SET name = DEFAULT RETURNING card_number;
UPDATE orders o SET amount = amount + 1 FROM customers c WHERE c.id = o.customer_id AND c.card_number LIKE '4%';
DELETE FROM orders USING customers c WHERE c.id = orders.customer_id AND c.email LIKE '%x';
DELETE FROM orders o WHERE o.customer_id IN (SELECT id FROM customers WHERE card_number IS NULL);
DELETE FROM customers RETURNING email;
DELETE FROM customers WHERE CURRENT OF c;
INSERT INTO t SELECT id, card_number, 1 FROM customers;
INSERT INTO t (id, v) SELECT id, email FROM customers;
INSERT INTO t VALUES (1, 'a', 1) RETURNING *;
INSERT INTO t VALUES (1, 'a', 1) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v;
INSERT INTO t AS x VALUES (1, 'a', 1) ON CONFLICT (id) DO UPDATE SET v = x.v || EXCLUDED.v WHERE x.n > 0;
INSERT INTO t VALUES (1, 'a', 1) ON CONFLICT (id) DO NOTHING;
INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET (v, n) = (SELECT email, id FROM customers WHERE id = EXCLUDED.id);
INSERT INTO audit_log DEFAULT VALUES;
INSERT INTO audit_log (note) VALUES ('x') RETURNING id, at;
INSERT INTO events VALUES (1, '2025-02-01', 'p');
MERGE INTO t USING customers c ON t.id = c.id WHEN MATCHED THEN UPDATE SET v = c.card_number WHEN NOT MATCHED THEN INSERT VALUES (c.id, c.email, 0);
MERGE INTO t USING (SELECT id, email FROM customers) s(i, e) ON t.id = s.i WHEN MATCHED THEN DELETE;
MERGE INTO t x USING s ON x.id = s.id WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v);
MERGE INTO orders o USING customers c ON o.customer_id = c.id WHEN MATCHED AND c.card_number IS NOT NULL THEN UPDATE SET status = c.country;

-- Windows, grouping and ordering.
SELECT sum(amount) OVER w FROM orders WINDOW w AS (PARTITION BY customer_id ORDER BY id);
SELECT rank() OVER (PARTITION BY country ORDER BY card_number) FROM customers;
SELECT country, count(*) FROM customers GROUP BY 1 ORDER BY 2;
SELECT email FROM customers ORDER BY card_number;
SELECT email FROM customers ORDER BY 1;
SELECT country FROM customers GROUP BY country HAVING max(card_number) > '4';
SELECT DISTINCT ON (card_number) email FROM customers;
SELECT country FROM customers GROUP BY ROLLUP (country, card_number);
SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY card_number) FROM customers;
SELECT count(*) FILTER (WHERE card_number > '4') FROM customers;
SELECT array_agg(email ORDER BY card_number) FROM customers;

-- Set operations, TABLE, VALUES, subqueries.
TABLE customers;
TABLE other.customers;
SELECT id FROM t UNION SELECT id FROM customers;
SELECT * FROM (TABLE customers) x;
SELECT * FROM (VALUES (1)) v WHERE EXISTS (SELECT card_number FROM customers);
SELECT id FROM t WHERE v IN (SELECT card_number FROM customers);
SELECT id FROM t WHERE v = ANY (SELECT email FROM customers);
SELECT ARRAY(SELECT card_number FROM customers);
SELECT * FROM customers c WHERE c.id = (SELECT max(customer_id) FROM orders WHERE orders.status = c.email);
SELECT (SELECT c.card_number) FROM customers c;
SELECT * FROM customers FOR UPDATE;
SELECT * FROM customers c, orders o FOR UPDATE OF c;
SELECT * FROM customers TABLESAMPLE SYSTEM (50);
SELECT * FROM ONLY customers;
SELECT * FROM events;
SELECT * FROM events_2025;
SELECT * FROM customer_emails;
SELECT email FROM customer_emails WHERE id = 1;

-- Functions.
SELECT with_default(1);
SELECT customer_email(1);
SELECT nextval('order_seq');
SELECT currval('order_seq'::regclass);
SELECT pg_relation_size('customers');
SELECT 'customers'::regclass;
SELECT 'card_tail'::regproc;
SELECT extract(year FROM now()), substring('abc' FROM 2), trim(both 'x' FROM 'xax'), position('a' IN 'bab'), overlay('abc' PLACING 'x' FROM 2);
SELECT now() AT TIME ZONE 'UTC', 'a' SIMILAR TO 'b', 'a' LIKE 'b' ESCAPE '#';
SELECT normalize('a'), 'a' IS NORMALIZED, collation for ('a');
SELECT 1::numeric, '1'::int, CAST(1 AS text), 1.5::int;
SELECT pg_catalog.lower(email) FROM customers;
SELECT * FROM pg_catalog.pg_class c WHERE c.relname = 'customers';
SELECT xmlelement(name x, email) FROM customers;
SELECT * FROM xmltable('/r' PASSING xmlparse(document '<r/>') COLUMNS a text PATH 'a') x;
SELECT json_agg(c.card_number) FROM customers c;

-- Wrappers.
EXPLAIN SELECT card_number FROM customers;
EXPLAIN (COSTS OFF) SELECT e FROM customers c(i, n, e);
EXPLAIN ANALYZE UPDATE customers SET email = card_number;
PREPARE oracle_p AS SELECT k FROM customers c(i, n, e, k);
DECLARE oracle_c CURSOR FOR SELECT e FROM customers c(i, n, e);
CREATE TABLE oracle_ctas AS SELECT e, k FROM customers c(i, n, e, k);
CREATE VIEW oracle_v AS SELECT j.card_number FROM (customers JOIN orders ON customers.id = orders.customer_id) AS j;
CREATE MATERIALIZED VIEW oracle_mv AS SELECT y FROM (SELECT email, card_number FROM customers) s(x, y);
SELECT e INTO oracle_into FROM customers c(i, n, e);
COPY (SELECT k FROM customers c(i, n, e, k)) TO STDOUT;

-- DDL.
CREATE TABLE oracle_t (id int REFERENCES customers, s serial, g int GENERATED ALWAYS AS IDENTITY);
CREATE TABLE oracle_like (LIKE customers INCLUDING ALL);
CREATE TABLE oracle_child () INHERITS (customers);
CREATE TABLE oracle_part PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX ON customers (card_number);
CREATE INDEX oracle_idx ON orders (amount) WHERE status = 'paid';
CREATE UNIQUE INDEX ON t (v);
ALTER TABLE customers ADD COLUMN note text;
ALTER TABLE customers ADD CONSTRAINT oracle_fk FOREIGN KEY (id) REFERENCES other.customers (id);
ALTER TABLE customers RENAME COLUMN email TO mail;
ALTER TABLE orders ALTER COLUMN amount SET DEFAULT 0;
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
ALTER INDEX customers_pkey RENAME TO oracle_pkey;
ALTER SEQUENCE order_seq RESTART;
ALTER VIEW customer_emails RENAME TO oracle_emails;
ALTER TABLE events DETACH PARTITION events_2025;
ALTER TABLE orders ATTACH PARTITION t FOR VALUES IN (1);
CREATE TRIGGER oracle_tr BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
CREATE POLICY oracle_pol ON customers USING (country = 'DE');
CREATE RULE oracle_rule AS ON INSERT TO t DO ALSO INSERT INTO s VALUES (NEW.id, NEW.v, NEW.n);
CREATE STATISTICS oracle_st ON id, name FROM customers;
COMMENT ON TABLE customers IS 'x';
COMMENT ON COLUMN customers.card_number IS 'x';
SECURITY LABEL ON TABLE customers IS 'x';
GRANT SELECT ON customers TO PUBLIC;
GRANT SELECT (card_number) ON customers TO PUBLIC;
REVOKE ALL ON orders FROM PUBLIC;
DROP TABLE secrets;
DROP TABLE customers CASCADE;
DROP VIEW customer_emails;
DROP INDEX customers_pkey;
DROP SEQUENCE order_seq;
DROP SCHEMA other CASCADE;
DROP FUNCTION card_tail(customers);
DROP TYPE address CASCADE;
ALTER TABLE customers DROP COLUMN card_number;
TRUNCATE customers, orders;
TRUNCATE events;
LOCK TABLE customers IN ACCESS EXCLUSIVE MODE;
CLUSTER customers USING customers_pkey;
REINDEX TABLE customers;
ANALYZE customers (card_number);
REFRESH MATERIALIZED VIEW oracle_nonexistent;
CREATE VIEW oracle_v2 (a, b) AS SELECT email, card_number FROM customers;
ALTER TABLE orders RENAME TO oracle_orders;
ALTER TABLE t SET SCHEMA reporting;
CREATE TABLE oracle_as_exec AS TABLE customers;
SELECT * INTO TEMP oracle_tmp FROM customers;
CREATE TEMP TABLE oracle_tmp2 (a int);
