"""The dispatcher on one machine with no AWS account: an embedded AWS (moto server), the resources
of the synthesized `dev` template, faithful event source mapping pollers and function workers."""

DEFAULT_PORT = 4566  # the embedded AWS's port: the one local AWS emulators conventionally use
