-- Objects for the oracle's own cases (tests/oracle/cases.sql) and its generated
-- statements, added to the harness's SAMPLE_SCHEMA (customers, orders,
-- reporting.daily_revenue) in the `app` database.
create schema other;
create table other.customers (id int primary key, secret text);
create table t (id int primary key, v text, n int);
create table s (id int primary key, v text, n int);
create table t1 (id int, a text);
create table t2 (id int, b text);
create table t3 (id int, c text);
create table secrets (id int, token text);
create type address as (street text, city text);
create table shipments (id int primary key, order_id int, dest address, tags text[]);
create table audit_log (id serial primary key, note text, at timestamptz default now());
create table events (id int, at date, payload text) partition by range (at);
create table events_2025 partition of events for values from ('2025-01-01') to ('2026-01-01');
create view customer_emails as select id, email from customers;
create sequence order_seq;
create function card_tail(c customers) returns text language sql as 'select right(c.card_number, 4)';
create function all_customers() returns setof customers language sql as 'select * from customers';
create function with_default(a int, b int default length(current_user)) returns int
  language sql as 'select a + b';
create function customer_email(i int) returns text language sql as 'select email from customers where id = i';
create function pair(out x int, out y text) returns setof record language sql as $$ values (1, 'a') $$;
