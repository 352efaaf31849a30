"""The charge and refund history users list."""
