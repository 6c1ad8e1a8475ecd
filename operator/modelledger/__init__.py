"""modelledger: version control and automatic rollback of deployed ML models on Kubernetes."""

__version__ = "0.1.0"
