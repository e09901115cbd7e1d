"""Transport layer: gRPC servicers, the error-mapping interceptor and proto <-> domain conversions."""
