-- Sample shop database for make demo: several tables, a few thousand rows of varied types, SERIAL
-- columns, foreign keys, a NULL-heavy column and a large (TOASTed) text value.
CREATE SCHEMA shop;

CREATE TABLE shop.customers (
  id         serial PRIMARY KEY,
  name       text NOT NULL,
  email      text UNIQUE,
  born       date,
  vip        boolean NOT NULL DEFAULT false,
  fax        text,                       -- NULL-heavy: almost nobody has a fax
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE shop.products (
  id          serial PRIMARY KEY,
  sku         uuid NOT NULL UNIQUE,
  title       varchar(120) NOT NULL,
  price       numeric(10,2) NOT NULL CHECK (price >= 0),
  weight_kg   double precision,
  tags        text[],
  attributes  jsonb,
  thumbnail   bytea,
  description text                       -- one product has a very large description
);

CREATE TABLE shop.orders (
  id          bigserial PRIMARY KEY,
  customer_id int NOT NULL REFERENCES shop.customers (id),
  placed_at   timestamptz NOT NULL,
  ship_within interval,
  status      text NOT NULL DEFAULT 'new',
  client_ip   inet
);

CREATE TABLE shop.order_items (
  order_id   bigint NOT NULL REFERENCES shop.orders (id) ON DELETE CASCADE,
  line       int NOT NULL,
  product_id int NOT NULL REFERENCES shop.products (id),
  quantity   int NOT NULL CHECK (quantity > 0),
  unit_price numeric(10,2) NOT NULL,
  PRIMARY KEY (order_id, line)
);

INSERT INTO shop.customers (name, email, born, vip, fax, created_at)
SELECT 'Customer ' || i, 'customer' || i || '@example.com', DATE '1950-01-01' + (i * 37) % 20000, i % 17 = 0,
       CASE WHEN i % 97 = 0 THEN '+49 30 ' || i END, TIMESTAMPTZ '2023-01-01 00:00+00' + i * interval '1 hour'
FROM generate_series(1, 1500) i;

INSERT INTO shop.products (sku, title, price, weight_kg, tags, attributes, thumbnail, description)
SELECT md5('sku' || i)::uuid, 'Product ' || i, (i % 500) + 0.99, CASE WHEN i % 5 <> 0 THEN i / 3.0 END,
       CASE WHEN i % 4 = 0 THEN ARRAY['sale', 'tag' || i % 10] END,
       jsonb_build_object('color', (ARRAY['red', 'green', 'blue'])[1 + i % 3], 'size', i % 7),
       CASE WHEN i % 10 = 0 THEN decode(md5('img' || i), 'hex') END,
       CASE WHEN i = 1 THEN repeat('A very long description. ', 40000) ELSE 'Product number ' || i END
FROM generate_series(1, 400) i;

INSERT INTO shop.orders (customer_id, placed_at, ship_within, status, client_ip)
SELECT 1 + (i * 7) % 1500, TIMESTAMPTZ '2024-01-01 00:00+00' + i * interval '17 minutes',
       CASE WHEN i % 3 = 0 THEN interval '2 days 4 hours' END,
       (ARRAY['new', 'paid', 'shipped', 'delivered'])[1 + i % 4],
       CASE WHEN i % 2 = 0 THEN ('192.168.' || i % 256 || '.' || i % 200)::inet END
FROM generate_series(1, 3000) i;

INSERT INTO shop.order_items (order_id, line, product_id, quantity, unit_price)
SELECT o, l, 1 + (o * l) % 400, 1 + (o + l) % 5, ((o * l) % 500) + 0.99
FROM generate_series(1, 3000) o, generate_series(1, 2) l;

ANALYZE;
