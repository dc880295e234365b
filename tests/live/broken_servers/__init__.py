"""Deliberately broken chat servers that prove the conformance suite catches what it claims."""
