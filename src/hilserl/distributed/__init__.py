"""Actor <-> learner transport over gRPC: protobuf schema (`hilserl.proto`), array codec, token/TLS auth, the
learner's server and the actor's client. See each module's docstring for what it guarantees."""
