"""Process settings (environment, `.env`) and the workspace config (`leadflow.yaml`), validated at load."""
