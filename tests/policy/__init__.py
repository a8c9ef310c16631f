"""Tests of the operators' policy pack against the program's real resource graph."""
