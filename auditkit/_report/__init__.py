"""The HTML report: one self-contained file about any streams (`ak.report`)."""
