"""HLS delivery over HTTP: the handlers and the segment sources behind them."""
