"""CDK constructs and stacks that deploy one throttled consumer per registered subscription."""
