"""srframe's reference plugins, installed and discovered through entry points like any third party's."""
