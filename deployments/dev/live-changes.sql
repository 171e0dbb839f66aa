-- Live changes make demo applies to the source while the task is in incremental.
INSERT INTO shop.customers (name, email, vip) VALUES ('Live Customer', 'live@example.com', true);
UPDATE shop.customers SET vip = true, fax = '+1 555 0100' WHERE id BETWEEN 10 AND 20;
UPDATE shop.products SET price = price * 1.1 WHERE id = 1;   -- its large description stays as is
BEGIN;
INSERT INTO shop.orders (customer_id, placed_at, status) VALUES (1501, now(), 'paid');
INSERT INTO shop.order_items (order_id, line, product_id, quantity, unit_price)
  SELECT currval('shop.orders_id_seq'), 1, 42, 3, 19.99;
COMMIT;
UPDATE shop.orders SET status = 'cancelled' WHERE id % 250 = 0;
DELETE FROM shop.order_items WHERE order_id IN (SELECT id FROM shop.orders WHERE status = 'cancelled');
DELETE FROM shop.orders WHERE status = 'cancelled';
