"""Provisioning a site: the broker's files, reader credentials and the site CA.

- `passwords`: Mosquitto's password file (PBKDF2-SHA512, the `$7$` format);
- `broker_files`: the Mosquitto configuration and `%u` ACL, generated from `protocol.topics`;
- `certificates`: the site CA, reader client certificates, the broker's certificate, the CRL;
- `readers`: `provision_reader`, `revoke_reader`, `list_readers` (database + credentials);
- `commands`: the `rollcall readers`, `rollcall ca` and `rollcall broker` subcommands.
"""
