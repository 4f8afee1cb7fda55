"""fleetdeck reports: chargeback, usage, forecast and right-sizing over the DuckDB store.

Pipeline (only `sources` does I/O; the rest is pure, `now` injected):

    frames = sources.from_store(con, start, end, now=now)    # LazyFrames of the period
    ledger = ledger.build_ledger(frames)                      # the one heavy pass
    chargeback.chargeback(ledger, by="user", rates=rates)     # -> pl.DataFrame
    usage.usage(ledger, every="day")                          # -> pl.DataFrame
    forecast.forecast(ledger, rates=rates, months=3)          # -> Forecast(plan, series)
    rightsizing.rightsizing(ledger, rates=rates, by=None)     # -> pl.DataFrame
    pack.build_report(name, ledger, ...) -> model.Report      # tables + notes + chart data
    export.render(reports, fmt) -> str | bytes                # table csv parquet xlsx html md json

CLI and console entry point: `command.render_report(name, con, ...)`; argparse glue:
`command.add_arguments(parser)` and `command.run(args, con, rates=..., now=...)`.
"""
