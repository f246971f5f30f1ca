"""What the server tells operators: traffic statistics, Prometheus metrics and logs.

- `stats`: per-policy counters and latency percentiles (GetStats, the stats log line);
- `metrics`: the Prometheus endpoint and its gRPC interceptor;
- `logs`: text or JSON log lines, and the quieting of libraries' start-up chatter.
"""
