"""Tests of the CI workflows and their lint."""
