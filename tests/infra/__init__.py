"""CDK assertion tests: the synthesized templates, read as CloudFormation properties."""
