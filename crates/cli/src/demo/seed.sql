-- The demo's analytics database: customers with personal data, their orders, and the
-- reporting tables analysts are meant to use.

CREATE SCHEMA reporting;

CREATE TABLE public.customers (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    email       text NOT NULL,
    card_number text NOT NULL,
    country     text NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE public.orders (
    id          integer PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES public.customers (id),
    amount      numeric(10, 2) NOT NULL,
    status      text NOT NULL,
    ordered_at  timestamptz NOT NULL
);

INSERT INTO public.customers
SELECT i,
       (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Ken','Margaret','Donald','Frances','John'])[1 + i % 10]
         || ' ' || (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Thompson','Hamilton','Knuth','Allen','Backus'])[1 + (i / 10) % 10],
       'customer' || i || '@example.com',
       '4' || lpad((i * 7919 % 1000000000000000)::text, 15, '0'),
       (ARRAY['DE','FR','US','GB','NL','SE','JP','BR'])[1 + i % 8],
       timestamptz '2025-01-01' + i * interval '7 hours'
FROM generate_series(1, 1000) AS i;

INSERT INTO public.orders
SELECT i,
       1 + (i * 37) % 1000,
       round((5 + (i * 7919) % 500 + (i % 100) / 100.0)::numeric, 2),
       (ARRAY['paid','paid','paid','shipped','refunded'])[1 + i % 5],
       timestamptz '2025-06-01' + i * interval '53 minutes'
FROM generate_series(1, 5000) AS i;

CREATE TABLE reporting.daily_revenue AS
SELECT date_trunc('day', ordered_at)::date AS day,
       count(*) AS orders,
       sum(amount) AS revenue
FROM public.orders
WHERE status <> 'refunded'
GROUP BY 1;

CREATE TABLE reporting.revenue_by_country AS
SELECT c.country, count(*) AS orders, sum(o.amount) AS revenue
FROM public.orders o JOIN public.customers c ON c.id = o.customer_id
WHERE o.status <> 'refunded'
GROUP BY 1;

-- Roles the gateway logs in as. Their passwords are set by the demo and held only by the
-- gateway.
CREATE ROLE analyst LOGIN;
CREATE ROLE app_writer LOGIN;
CREATE ROLE dba LOGIN CREATEROLE CREATEDB;

GRANT USAGE ON SCHEMA reporting TO analyst, app_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO analyst, app_writer;
GRANT SELECT ON public.customers, public.orders TO analyst;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.customers, public.orders TO app_writer;
GRANT ALL ON SCHEMA public, reporting TO dba;
GRANT ALL ON ALL TABLES IN SCHEMA public, reporting TO dba;
