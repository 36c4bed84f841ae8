"""A real DNS server on 127.0.0.1 (UDP and TCP, a free port), built on
dnslib's server, whose answers a test sets: TXT records by name, names that
do not exist (NXDOMAIN, the default) and a name that never answers (a
timeout). The app's resolver (dnspython) is pointed at it through
CG_DNS_NAMESERVERS; nothing of the resolver is replaced.

    dns = FakeDNS().start();  dns.nameservers  # "127.0.0.1:<port>"
    dns.set_txt("_costguardian-challenge.example.com", "costguardian-verification=…")
    dns.remove("_costguardian-challenge.example.com");  dns.stop()
"""
from __future__ import annotations

import threading

from dnslib import QTYPE, RCODE, RR, TXT, DNSError
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class _Resolver(BaseResolver):
    def __init__(self, fake: "FakeDNS"):
        self.fake = fake

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self.fake.lock:
            self.fake.queries.append((name, QTYPE[request.q.qtype]))
            if name in self.fake.silent:
                raise DNSError("not answering")  # dnslib's handler sends nothing: the resolver times out
            values = self.fake.txt.get(name)
        if values is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for value in values:
                reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(value), ttl=60))
        return reply  # the name exists; another type has no answer (NOERROR, empty)


class FakeDNS:
    def __init__(self):
        self.lock = threading.Lock()
        self.txt: dict[str, list[str]] = {}
        self.silent: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self._servers: list[DNSServer] = []

    def start(self) -> "FakeDNS":
        resolver, logger = _Resolver(self), DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data",
                                                     prefix=False)
        # The UDP port is free; the TCP port of that number may not be (another
        # process's connection, e.g. a parallel test worker's): try another.
        for attempt in range(20):
            udp = DNSServer(resolver, address="127.0.0.1", port=0, logger=logger)
            self.port = udp.server.server_address[1]
            try:
                tcp = DNSServer(resolver, address="127.0.0.1", port=self.port, tcp=True, logger=logger)
                break
            except OSError:
                udp.server.server_close()
                if attempt == 19:
                    raise
        self._servers = [udp, tcp]
        for server in self._servers:
            server.start_thread()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()

    @property
    def nameservers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_txt(self, name: str, *values: str) -> None:
        with self.lock:
            self.txt[name.rstrip(".").lower()] = list(values)

    def remove(self, name: str) -> None:
        with self.lock:
            self.txt.pop(name.rstrip(".").lower(), None)

    def never_answer(self, name: str) -> None:
        with self.lock:
            self.silent.add(name.rstrip(".").lower())

    def clear(self) -> None:
        with self.lock:
            self.txt.clear()
            self.silent.clear()
            self.queries.clear()
