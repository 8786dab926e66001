import pyarrow as pa, pyarrow.parquet as pq, duckdb, decimal, uuid, json
I64MIN, I64MAX = -2**63, 2**63-1
I32MIN, I32MAX = -2**31, 2**31-1
ts = pa.array([I64MIN, I64MIN+1, 0, 1700000000000000, I64MAX-1, I64MAX, None], pa.int64())
cols = {
 "ts": ts.cast(pa.timestamp("us")),
 "tstz": ts.cast(pa.timestamp("us", tz="UTC")),
 "d": pa.array([I32MIN, I32MIN+1, 0, 19000, I32MAX-1, I32MAX, None], pa.int32()).cast(pa.date32()),
 "t": pa.array([0, 1, 3600*10**6, 86399999999, 86400000000, 5, None], pa.int64()).cast(pa.time64("us")),
 "dec": pa.array([decimal.Decimal("-99999999999999999999.999999999999999999"), decimal.Decimal("0"), decimal.Decimal("1.5"), decimal.Decimal("12345678901234567890.123456789012345678"), decimal.Decimal("-0.000000000000000001"), decimal.Decimal("99999999999999999999.999999999999999999"), None], pa.decimal128(38,18)),
 "u": pa.array([uuid.UUID(int=i).bytes for i in range(6)]+[None], pa.binary(16)).cast(pa.uuid()) if hasattr(pa,"uuid") else None,
 "j": pa.array(['{"a":1}','[]','null','"x"','{}','1',None], pa.string()).cast(pa.json_()) if hasattr(pa,"json_") else None,
 "f": pa.array([float("nan"), float("inf"), float("-inf"), -0.0, 1.5, 2.0, None], pa.float64()),
 "b": pa.array([b"", b"\x00\xff", b"abc", b"\\x", b"z", b"q", None], pa.binary()),
}
cols = {k:v for k,v in cols.items() if v is not None}
t = pa.table(cols)
pq.write_table(t, "x.parquet", compression="zstd")
md = pq.read_metadata("x.parquet")
print(md.schema)
con = duckdb.connect()
print(con.sql("DESCRIBE SELECT * FROM read_parquet('x.parquet')"))
print(con.sql("SELECT ts::VARCHAR ts, tstz::VARCHAR tstz, d::VARCHAR d, t::VARCHAR t FROM read_parquet('x.parquet')"))
print(con.sql("SELECT dec, u, j, f, b FROM read_parquet('x.parquet')"))
print(con.sql("SELECT ts = 'infinity'::timestamp inf, ts='-infinity'::timestamp ninf, isinf(ts) FROM read_parquet('x.parquet')"))
print(con.sql("SELECT d = 'infinity'::date inf, d='-infinity'::date ninf FROM read_parquet('x.parquet')"))
print(con.sql("SELECT epoch_us('infinity'::timestamp) a, epoch_us('-infinity'::timestamp) b"))
print(con.sql("SELECT min(ts)::varchar, max(ts)::varchar, min(dec), max(dec), sum(dec) FROM read_parquet('x.parquet')"))
