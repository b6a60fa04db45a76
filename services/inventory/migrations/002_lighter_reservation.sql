-- The statements a batch runs while it holds the stock rows' locks, made
-- lighter (measured with BenchmarkReserveStock, docs/benchmarks.md):
-- a decision's outcome is already the outcome event in the outbox and on the
-- stream, so the decision row only claims the order; and the reservation's
-- SKU is a stock row the same transaction has just locked and read, so the
-- foreign key only repeated that lookup for every line.
ALTER TABLE decisions DROP COLUMN outcome;
ALTER TABLE reservations DROP CONSTRAINT IF EXISTS reservations_sku_fkey;
