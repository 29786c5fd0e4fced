"""The security policy, pure: strings and a clock in, decisions out.

- :mod:`collab.policy.tokens`: JWTs -> :class:`~collab.policy.tokens.Grant` (what a
  token allows), and minting them (``collab token``);
- :mod:`collab.policy.origins`: which ``Origin`` headers may connect;
- :mod:`collab.policy.limits`: connection counts, rates, trusted proxies;
- :mod:`collab.policy.access`: tokens and origins together, as the gate and the HTTP router
  ask them, once per handshake or request (never per message).

Nothing here awaits, opens a socket or reads the environment.
"""
