"""PostgreSQL through the Piccolo ORM: tables, the engine, migrations and the queries we run."""
