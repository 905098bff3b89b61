"""Providers: ``base`` holds the contract every provider implements; one package per provider."""

from .base import BaseProvider

__all__ = ["BaseProvider"]
