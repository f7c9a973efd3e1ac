-- Every category a product is listed under (the real files list one product in several
-- sub-categories; products.sub_category holds one of them, see README), ids of listings merged
-- into another product (events and requests on an alias reach the product), and each import's
-- data-quality figures (an import whose parse rates collapse is refused).
-- No foreign key on product_categories: its per-row check made the import of 550k products
-- 7.6 s slower; the importer, its only writer, keeps it to existing products.
CREATE TABLE IF NOT EXISTS product_categories (
    product_id    text NOT NULL,
    main_category text NOT NULL,
    sub_category  text NOT NULL,
    PRIMARY KEY (product_id, main_category, sub_category)
);
CREATE INDEX IF NOT EXISTS product_categories_sub_category_idx
    ON product_categories (sub_category);
CREATE TABLE IF NOT EXISTS product_aliases (
    alias_id   text PRIMARY KEY CHECK (alias_id ~ '^[A-Z0-9]{10}$'),
    product_id text NOT NULL REFERENCES products (id) ON DELETE CASCADE
);
ALTER TABLE catalog_imports ADD COLUMN IF NOT EXISTS quality jsonb;
