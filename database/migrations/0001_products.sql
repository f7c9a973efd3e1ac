-- The catalog: the spec's 11 columns, id the primary key.
CREATE TABLE products (
    id             text PRIMARY KEY CHECK (id ~ '^[A-Z0-9]{10}$'),
    name           text NOT NULL,
    main_category  text NOT NULL,
    sub_category   text NOT NULL,
    image          text,
    link           text,
    ratings        real CHECK (ratings BETWEEN 0 AND 5),
    no_of_ratings  integer CHECK (no_of_ratings >= 0),
    discount_price numeric(12, 2) CHECK (discount_price > 0),
    actual_price   numeric(12, 2) CHECK (actual_price > 0),
    discount_ratio real
);
CREATE INDEX products_sub_category_idx ON products (sub_category);

-- One row per catalog import, so an unchanged file is not imported twice.
CREATE TABLE catalog_imports (
    id            bigserial PRIMARY KEY,
    source_sha256 text NOT NULL,
    rows_loaded   integer NOT NULL,
    imported_at   timestamptz NOT NULL DEFAULT now()
);
