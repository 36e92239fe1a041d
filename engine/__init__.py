"""The picture engine: `engine.api` (plain-data contract) and `engine.pictures` (Pillow-only
picture handling) are light; `engine.pipeline` and `engine.loading` (torch + diffusers) are
imported only by whoever runs a model. Keep this file free of imports so `import engine` stays cheap."""
