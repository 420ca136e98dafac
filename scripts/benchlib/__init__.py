"""The benchmark harness behind ``scripts/bench``: measures the quality bars from outside the portal."""
