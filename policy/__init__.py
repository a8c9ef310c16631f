"""The operators' policy pack; `astats_rules` holds the rules as plain, testable functions."""
