"""The registry client's transport: how one API request reaches a registry, as layers.

Each layer is a `Transport` (`round_trip(request) -> response`) wrapping the next, as
go-containerregistry's `transport/` stacks `http.RoundTripper`s. From the API verbs down:

- `authorization.py` — `Authorizer`: the Authorization for exactly the request's scopes;
  a 401 renews or escalates the token (token_auth.py) and sends once more.
- `retries.py` — `Retrier`: connection errors and 408/429/5xx again with backoff and
  jitter within the RetryPolicy (http_retry.py), honouring Retry-After; a refused
  connection gets one quick retry only; TLS failures are named.
- `redirects.py` — `RedirectFollower`: redirects followed by hand for GET and HEAD, the
  Authorization sent only to the registry's own origin, blob redirects remembered
  (redirect_memory.py).
- `pools.py` — `PooledSender`: one HTTP exchange on urllib3's connection pools (one for
  the registry host, one for the storage hosts it redirects to), with the TLS settings.

`stack.py` builds the stack for one registry; `ping.py` finds its scheme (`GET /v2/`);
`responses.py` holds what every layer does with an answer (drain, read, name an error).
The layers know HTTP, not OCI: the verbs (blobs, uploads, manifests) are in
`registry_client.py`, one level up.
"""
