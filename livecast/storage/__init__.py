"""Storage: a database interface, its backends, migrations and the repositories that hold all SQL.

Services import the interface (``storage.database``), the domain errors (``storage.errors``)
and repositories; only a backend module imports a driver.
"""
