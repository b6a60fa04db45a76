-- The statements a batch runs while it holds the stock rows' locks, made
-- lighter (measured with BenchmarkReserveStock, docs/benchmarks.md): the
-- reservation's SKU is a stock row the same transaction has just locked and
-- read, so the foreign key only repeated that lookup for every line.
--
-- decisions.outcome is no longer written (a decision's outcome is its
-- outcome event, in the outbox and on the stream), but the column stays
-- until no running binary writes it: an instance of the version before
-- still does, during a rolling deploy. A later migration drops it.
ALTER TABLE reservations DROP CONSTRAINT IF EXISTS reservations_sku_fkey;
