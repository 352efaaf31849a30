"""kassa: an open-source payment gateway service."""
