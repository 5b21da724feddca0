"""The worker API's answers as plain functions (``api``) and their OpenAPI document
(``openapi``); the HTTP adapter is ``streams.worker.web``."""
