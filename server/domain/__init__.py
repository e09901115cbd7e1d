"""Domain layer: fleet status, scoring, training jobs and ingestion, free of protobuf and gRPC."""
