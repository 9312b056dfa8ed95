#!/usr/bin/env python3
"""A Python http.server origin for the differential fuzzers.

BaseHTTPRequestHandler parses the request line and the fields (through
email.parser, a lenient parser); the body is read the way a typical small
Python application does it: chunked when Transfer-Encoding mentions chunked,
else Content-Length through int() (which accepts "+5", " 5 " and "0_5").

On start it prints {"ready": true, "port": N}. Commands arrive one JSON object
per line on stdin; {"id": 1, "cmd": "sync"} is answered {"id": 1, "events": [...]}
with every event since the last sync:
  {"type": "request", "conn", "n", "method", "url", "version", "headers", "body"}
  {"type": "reject", "conn", "code", "reason"}   (answered with X-Fuzz-Origin: python-reject, then closed)
Every parsed request is answered 200 with X-Fuzz-* fields and the event as
JSON. It exits when stdin closes.
"""
import base64
import hashlib
import json
import os
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
EVENTS = []


def record(event):
    with LOCK:
        EVENTS.append(event)


class BodyError(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'fuzz-python'

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass

    def setup(self):
        super().setup()
        self.count = 0

    def send_error(self, code, message=None, explain=None):
        # Written by hand: the stock send_error omits the status line when the
        # request line could not be parsed (request_version stays HTTP/0.9).
        record({'type': 'reject', 'conn': self.client_address[1], 'code': code, 'reason': message or ''})
        self.close_connection = True
        try:
            self.wfile.write(
                ('HTTP/1.1 %d Error\r\nX-Fuzz-Origin: python-reject\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' % code).encode('latin-1')
            )
            self.wfile.flush()
        except OSError:
            pass

    def __getattr__(self, name):
        if name.startswith('do_'):
            return self.handle_any
        raise AttributeError(name)

    def read_chunked(self):
        body = b''
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise BodyError('eof in chunk size')
            try:
                size = int(line.split(b';', 1)[0].strip(), 16)
            except ValueError:
                raise BodyError('bad chunk size %r' % line)
            if size == 0:
                break
            data = self.rfile.read(size)
            if len(data) < size:
                raise BodyError('eof in chunk data')
            body += data
            self.rfile.readline(65537)  # the CRLF after the data
        while True:  # trailers
            line = self.rfile.readline(65537)
            if line in (b'\r\n', b'\n', b''):
                break
        return body

    def handle_any(self):
        self.count += 1
        try:
            te = self.headers.get('Transfer-Encoding', '')
            if 'chunked' in te.lower():
                body = self.read_chunked()
            elif self.headers.get('Content-Length') is not None:
                length = int(self.headers.get('Content-Length'))
                if length < 0:
                    raise BodyError('negative Content-Length')
                body = self.rfile.read(length)
                if len(body) < length:
                    raise BodyError('eof in body')
            else:
                body = b''
        except (BodyError, ValueError) as error:
            self.send_error(400, str(error))
            return
        event = {
            'type': 'request',
            'conn': self.client_address[1],
            'n': self.count,
            'method': self.command,
            'url': self.path,
            'version': self.request_version,
            'headers': [item for pair in self.headers.raw_items() for item in pair],
            'body': base64.b64encode(body).decode('ascii'),
            'bodyLength': len(body),
            'bodySha256': hashlib.sha256(body).hexdigest(),
        }
        record(event)
        payload = json.dumps(event).encode('utf-8')
        self.send_response(200)
        self.send_header('X-Fuzz-Origin', 'python')
        self.send_header('X-Fuzz-Method', urllib.parse.quote(self.command, safe=''))
        self.send_header('X-Fuzz-Target', urllib.parse.quote(self.path, safe=''))
        self.send_header('X-Fuzz-Body-Length', str(len(body)))
        self.send_header('X-Fuzz-Body-Sha256', event['bodySha256'])
        self.send_header('X-Fuzz-N', str(self.count))
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(payload)


def commands():
    for line in sys.stdin:
        try:
            command = json.loads(line)
        except ValueError:
            continue
        with LOCK:
            if command.get('cmd') == 'sync':
                reply = {'id': command.get('id'), 'events': list(EVENTS)}
                EVENTS.clear()
            else:
                reply = {'id': command.get('id'), 'error': 'unknown command'}
            sys.stdout.write(json.dumps(reply) + '\n')
            sys.stdout.flush()
    os._exit(0)


def main():
    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.daemon_threads = True
    sys.stdout.write(json.dumps({'ready': True, 'port': server.server_address[1]}) + '\n')
    sys.stdout.flush()
    threading.Thread(target=commands, daemon=True).start()
    server.serve_forever()


if __name__ == '__main__':
    main()
