"""Built-in synthetic battery photos (cylindrical / pouch / prismatic) with exact masks and a
controllable background bias. Entry point: `generate.generate_dataset`."""
