"""The dispatcher on one machine with no AWS account: an embedded AWS (moto server), the resources
of the synthesized `dev` template, faithful event source mapping pollers and function workers."""
