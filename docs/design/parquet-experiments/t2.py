import duckdb, subprocess, os
con = duckdb.connect()
os.makedirs("arch/public.trades/year=2024/month=01", exist_ok=True)
os.makedirs("arch/public.trades/year=2024/month=02", exist_ok=True)
con.sql("COPY (SELECT i AS id, 'S'||(i%3) AS symbol, i*1.5::DECIMAL(18,4) AS quantity FROM range(1000) t(i)) TO 'arch/public.trades/year=2024/month=01/part-0.parquet' (FORMAT parquet, COMPRESSION zstd)")
con.sql("COPY (SELECT i AS id, 'S'||(i%3) AS symbol, i*1.5::DECIMAL(18,4) AS quantity FROM range(500) t(i)) TO 'arch/public.trades/year=2024/month=02/part-0.parquet' (FORMAT parquet, COMPRESSION zstd)")
print(con.sql("SELECT year, month, count(*), sum(quantity) FROM read_parquet('arch/public.trades/*/*/*.parquet', hive_partitioning=true) GROUP BY ALL ORDER BY ALL"))
# csv.zst, two concatenated frames
open("a.csv","w").write("id,name\n1,a\n2,b\n"); open("b.csv","w").write("3,c\n4,\"d,e\"\n")
subprocess.run("zstd -q -f a.csv -o a.zst && zstd -q -f b.csv -o b.zst && cat a.zst b.zst > ab.csv.zst", shell=True, check=True)
print(con.sql("SELECT * FROM read_csv('ab.csv.zst', header=true)"))
print(con.sql("SELECT extension_name, loaded, installed FROM duckdb_extensions() WHERE extension_name IN ('parquet','json','httpfs','core_functions')"))
print(con.sql("SELECT path_in_schema, stats_min, stats_max, stats_null_count, stats_min_value, stats_max_value FROM parquet_metadata('x.parquet')"))
