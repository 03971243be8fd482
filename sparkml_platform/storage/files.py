"""Where the platform's own files live: one URI-based interface over a local disk, HDFS and S3.

Spark and Delta read and write the tables' rows. Every other byte the platform keeps
(statistics, training-set manifests, validation results, environment records, markers beside
the tables) goes through a `Location` from here; no other module opens a lake path itself.

The mechanism: each store's own protocol from Python (the local file system; HDFS's RPC
through `hdfs-native`; the S3 API through `boto3`), configured from the same Hadoop settings
Spark uses (`core-site.xml` under HADOOP_CONF_DIR, then `spark.hadoop.*` in platform.yml), so
one configuration serves both. Why not the Hadoop FileSystem of a Spark session: listings,
lineage and manifests then answer without starting a JVM, and each store's own atomic
primitive is used directly for the one operation that needs it, publishing a file once:
a hard link locally, a rename without overwrite on HDFS, a conditional PUT (If-None-Match)
on S3, where a rename is a copy and not atomic.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import shutil
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

from ..core.errors import ConfigError, JobFailed

SCHEMES = ("file", "hdfs", "s3a")
# Hadoop S3A keys (also per bucket, whose names may hold dots) and AWS keys handed to
# executors or an application master through Spark's environment settings.
SECRET_KEYS = re.compile(r"^(spark\.hadoop\.fs\.s3a\.(bucket\..+\.)?(access\.key|secret\.key|session\.token|"
                         r"encryption\.key|server-side-encryption\.key)"
                         r"|spark\.(executorEnv|yarn\.appMasterEnv|kubernetes\.driverEnv)\."
                         r"AWS_(SECRET_ACCESS_KEY|ACCESS_KEY_ID|SESSION_TOKEN))$")
TIMEOUT = 10  # seconds to connect and answer: an endpoint that does not answer fails fast


class Location:
    """A file or folder on one store, used like a `pathlib.Path`: `loc / "name"`, `.name`,
    `.parent`, `read_text()`; `str(loc)` is what Spark and Delta are given."""

    __slots__ = ("store", "uri")

    def __init__(self, store: "_Store", uri: str):
        self.store = store
        self.uri = uri.rstrip("/") if uri.rstrip("/") else "/"

    def __truediv__(self, part: str) -> "Location":
        return Location(self.store, f"{self.uri}/{part}")

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Location) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri)

    @property
    def parent(self) -> "Location":
        head = self.uri.rsplit("/", 1)[0]
        if head.endswith(":/") or self.uri == "/":
            return self  # a bucket's or a NameNode's root
        return Location(self.store, head or "/")

    @property
    def local(self) -> Path | None:
        """The local path, for a location on this machine's disk; else None."""
        return Path(self.uri) if isinstance(self.store, LocalStore) else None

    def relative_to(self, other: "Location") -> str:
        if self.uri != other.uri and not self.uri.startswith(other.uri.rstrip("/") + "/"):
            raise ValueError(f"{self} is not under {other}")
        return self.uri[len(other.uri):].lstrip("/")

    def exists(self) -> bool:
        return self.store.exists(self.uri)

    def is_dir(self) -> bool:
        return self.store.is_dir(self.uri)

    def names(self) -> list[str]:
        """The names directly inside this folder (none when it does not exist), sorted."""
        return sorted(self.store.names(self.uri))

    def read_text(self) -> str:
        """The file's text (undecodable bytes replaced); FileNotFoundError when it is absent."""
        return self.store.read(self.uri).decode("utf-8", errors="replace")

    def read_or_none(self) -> str | None:
        try:
            return self.read_text()
        except FileNotFoundError:
            return None

    def write_text(self, text: str) -> None:
        """Write the whole file; readers see the old content or the new one, never a part."""
        self.store.write(self.uri, text.encode())

    def create(self, text: str) -> bool:
        """Publish the file only if it does not exist yet, atomically on every store: True when
        this call created it, False when it was already there (its content untouched)."""
        return self.store.create(self.uri, text.encode())

    def unlink(self) -> None:
        self.store.delete(self.uri, recursive=False)

    def remove_tree(self) -> None:
        self.store.delete(self.uri, recursive=True)

    def escapes(self, root: "Location") -> Path | None:
        """Where a symbolic link on a local disk leads, when that is outside `root` (other
        stores have no links): None when the location stays inside."""
        if self.local is None:
            return None
        resolved, base = self.local.resolve(), Path(root.uri).resolve()
        return None if resolved.is_relative_to(base) else resolved


class Storage:
    """The stores a project reaches, configured from the Hadoop settings Spark also uses."""

    def __init__(self, spark_conf: dict[str, str] | None = None):
        self.settings = hadoop_settings(spark_conf or {})
        self._stores: dict[tuple[str, str], _Store] = {}

    def location(self, value: str, base: Path | None = None) -> Location:
        """A configured place: a URI (`hdfs://`, `s3a://`, `file://`) or a local path, relative
        ones resolved against `base` (the project root)."""
        scheme = urlsplit(value).scheme if "://" in value else ""
        parts = urlsplit(value) if scheme else None
        if parts is not None and "@" in parts.netloc:
            raise ConfigError(f"{scheme}://…@{parts.netloc.rsplit('@', 1)[1]}{parts.path}: a location "
                              "may not carry credentials (they would be recorded wherever the "
                              "location is): set them in the environment")
        if scheme in ("", "file"):
            if parts is not None and parts.netloc not in ("", "localhost"):
                raise ConfigError(f"{value!r}: a file:// location is on this machine: write "
                                  "file:///PATH (or a plain path)")
            path = Path(parts.path if parts is not None else value).expanduser()
            if not path.is_absolute():
                path = (base or Path.cwd()) / path
            return Location(self._store("file", ""), str(path))
        if scheme not in SCHEMES:
            hint = " (use s3a:// for a lake on S3: the scheme Hadoop and Spark read)" \
                if scheme in ("s3", "s3n") else ""
            raise ConfigError(f"{value!r}: the scheme {scheme}:// is not supported for the lake; "
                              f"use a local path, file://, hdfs:// or s3a://{hint}")
        if not parts.netloc:
            raise ConfigError(f"{value!r}: a {scheme}:// location needs a "
                              f"{'bucket' if scheme == 's3a' else 'NameNode host:port'}")
        uri = f"{scheme}://{parts.netloc}{parts.path or '/'}"
        return Location(self._store(scheme, parts.netloc), uri)

    def _store(self, scheme: str, authority: str) -> "_Store":
        key = (scheme, authority)
        if key not in self._stores:
            cls = {"file": LocalStore, "hdfs": HdfsStore, "s3a": S3Store}[scheme]
            self._stores[key] = cls(authority, self.settings)
        return self._stores[key]


def hadoop_settings(spark_conf: dict[str, str]) -> dict[str, str]:
    """Hadoop properties: the cluster's `core-site.xml` (HADOOP_CONF_DIR), then platform.yml's
    `spark.hadoop.*` keys, as Spark itself layers them."""
    settings: dict[str, str] = {}
    conf_dir = os.environ.get("HADOOP_CONF_DIR")
    for name in ("core-site.xml", "hdfs-site.xml"):
        path = Path(conf_dir, name) if conf_dir else None
        if path is not None and path.is_file():
            settings.update(_site_properties(path))
    prefix = "spark.hadoop."
    settings.update({k[len(prefix):]: str(v) for k, v in spark_conf.items() if k.startswith(prefix)})
    return settings


def refuse_committed_secrets(spark_conf: dict[str, str], where: str) -> None:
    """S3 keys belong in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or the
    cluster's own core-site.xml, never in a configuration file kept in version control."""
    for key in spark_conf:
        if SECRET_KEYS.match(key):
            raise ConfigError(f"{where}: spark.conf.{key} holds a secret in a committed file: "
                              "remove it and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                              "(and AWS_SESSION_TOKEN) in the environment, put it in the "
                              "git-ignored conf/local/, or name a credentials provider "
                              "(fs.s3a.aws.credentials.provider) in core-site.xml")


def _site_properties(path: Path) -> dict[str, str]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ConfigError(f"{path}: not a Hadoop configuration file ({exc})") from None
    return {p.findtext("name"): p.findtext("value") or "" for p in root.iter("property")
            if p.findtext("name")}


# --- stores -------------------------------------------------------------------------------


class _Store:
    scheme = ""

    def __init__(self, authority: str, settings: dict[str, str]):
        self.authority = authority
        self.settings = settings

    def delta_options(self) -> dict[str, str]:
        """What `deltalake` (delta-rs) needs to reach this store."""
        return {}


class LocalStore(_Store):
    scheme = "file"

    def exists(self, uri: str) -> bool:
        return Path(uri).exists()

    def is_dir(self, uri: str) -> bool:
        return Path(uri).is_dir()

    def names(self, uri: str) -> list[str]:
        try:
            return os.listdir(uri)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read(self, uri: str) -> bytes:
        try:
            return Path(uri).read_bytes()
        except IsADirectoryError:
            raise FileNotFoundError(uri) from None

    def _staged(self, uri: str, data: bytes) -> Path:
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        return tmp

    def write(self, uri: str, data: bytes) -> None:
        os.replace(self._staged(uri, data), uri)

    def create(self, uri: str, data: bytes) -> bool:
        tmp = self._staged(uri, data)
        try:
            os.link(tmp, uri)  # fails when the name exists: published whole, once
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, uri: str, recursive: bool) -> None:
        path = Path(uri)
        if recursive and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


class HdfsStore(_Store):
    """HDFS through `hdfs-native` (its RPC protocol, no JVM). Settings: HADOOP_CONF_DIR's files
    and platform.yml's `spark.hadoop.*` (name services, Kerberos, ...)."""

    scheme = "hdfs"

    @functools.cached_property
    def client(self):
        from hdfs_native import Client

        return Client(f"hdfs://{self.authority}", config=self._client_settings())

    def _client_settings(self) -> dict[str, str]:
        # The client retries a refused connection 15 times (minutes): a NameNode that does not
        # answer is an error within seconds unless the cluster's settings ask otherwise.
        return {"dfs.client.failover.max.attempts": "1", **self.settings}

    def _path(self, uri: str) -> str:
        return urlsplit(uri).path or "/"

    def _call(self, what: str, uri: str, call):
        try:
            return call()
        except FileNotFoundError:
            raise
        except (OSError, RuntimeError) as exc:
            raise JobFailed(f"HDFS at {self.authority}: {what} {uri} failed: "
                            f"{_one_line(exc)}") from None

    def _info(self, uri: str):
        try:
            return self._call("looking up", uri, lambda: self.client.get_file_info(self._path(uri)))
        except FileNotFoundError:
            return None

    def exists(self, uri: str) -> bool:
        return self._info(uri) is not None

    def is_dir(self, uri: str) -> bool:
        info = self._info(uri)
        return info is not None and info.isdir

    def names(self, uri: str) -> list[str]:
        try:
            listed = self._call("listing", uri, lambda: list(self.client.list_status(self._path(uri))))
        except FileNotFoundError:
            return []
        return [posixpath.basename(s.path.rstrip("/")) for s in listed]

    def read(self, uri: str) -> bytes:
        def whole():
            with self.client.read(self._path(uri)) as reader:
                return reader.read()
        return self._call("reading", uri, whole)

    def _staged(self, uri: str, data: bytes) -> str:
        from hdfs_native import WriteOptions

        path = self._path(uri)
        tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")

        def put():
            with self.client.create(tmp, WriteOptions(overwrite=False, create_parent=True)) as out:
                out.write(data)
        self._call("writing", uri, put)
        return tmp

    def write(self, uri: str, data: bytes) -> None:
        tmp = self._staged(uri, data)
        self._call("publishing", uri, lambda: self.client.rename(tmp, self._path(uri), overwrite=True))

    def create(self, uri: str, data: bytes) -> bool:
        tmp = self._staged(uri, data)
        try:
            # An HDFS rename is atomic and, without overwrite, fails when the target exists.
            self.client.rename(tmp, self._path(uri), overwrite=False)
            return True
        except (OSError, RuntimeError) as exc:
            if self.exists(uri):
                # A retried rename whose first try was applied finds its own content.
                return self.read(uri) == data
            raise JobFailed(f"HDFS at {self.authority}: publishing {uri} failed: "
                            f"{_one_line(exc)}") from None
        finally:
            try:
                self.client.delete(tmp, False)
            except (OSError, RuntimeError):
                pass

    def delete(self, uri: str, recursive: bool) -> None:
        try:
            self._call("deleting", uri, lambda: self.client.delete(self._path(uri), recursive))
        except FileNotFoundError:
            pass

    def delta_options(self) -> dict[str, str]:
        return self._client_settings()


class S3Store(_Store):
    """S3 (or an S3-compatible store) through boto3, with the S3A settings Spark uses:
    `fs.s3a.endpoint`, `fs.s3a.endpoint.region`, `fs.s3a.path.style.access`,
    `fs.s3a.connection.ssl.enabled`, per bucket as `fs.s3a.bucket.NAME.*`. Credentials: the
    AWS default chain (environment, profile, instance role), as S3A's default provider does."""

    scheme = "s3a"

    def _setting(self, key: str, default: str | None = None) -> str | None:
        return self.settings.get(f"fs.s3a.bucket.{self.authority}.{key}",
                                 self.settings.get(f"fs.s3a.{key}", default))

    @property
    def endpoint(self) -> str | None:
        endpoint = self._setting("endpoint")
        if not endpoint:
            return None
        if "://" not in endpoint:
            ssl = (self._setting("connection.ssl.enabled", "true") or "true").lower() == "true"
            endpoint = f"{'https' if ssl else 'http'}://{endpoint}"
        return endpoint

    @property
    def region(self) -> str:
        return self._setting("endpoint.region") or os.environ.get("AWS_REGION") \
            or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    @property
    def path_style(self) -> bool:
        return (self._setting("path.style.access", "false") or "").lower() == "true"

    def _credentials(self) -> dict[str, str]:
        """Keys from the cluster's core-site.xml, when it holds them (platform.yml may not)."""
        keys = {"aws_access_key_id": self._setting("access.key"),
                "aws_secret_access_key": self._setting("secret.key"),
                "aws_session_token": self._setting("session.token")}
        return {k: v for k, v in keys.items() if v}

    @functools.cached_property
    def client(self):
        import boto3
        from botocore.config import Config as BotoConfig

        endpoint = self.endpoint
        if endpoint and not re.fullmatch(r"https?://[^\s/:@]+(:\d+)?/?", endpoint):
            raise ConfigError(f"fs.s3a.endpoint {endpoint!r} (for bucket {self.authority}) is not an "
                              "endpoint like https://s3.eu-west-1.amazonaws.com or http://HOST:PORT")
        config = BotoConfig(connect_timeout=TIMEOUT, read_timeout=TIMEOUT * 3,
                            retries={"max_attempts": 2, "mode": "standard"},
                            s3={"addressing_style": "path" if self.path_style else "auto"})
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint, region_name=self.region,
                                              config=config, **self._credentials())

    def _key(self, uri: str) -> str:
        return urlsplit(uri).path.lstrip("/")

    def _call(self, what: str, uri: str, call):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"S3 bucket {self.authority}" + (f" at {self.endpoint}" if self.endpoint else "")
        try:
            return call()
        except NoCredentialsError:
            raise JobFailed(f"{where}: no credentials for {what} {uri}: set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY in the environment (or a profile or instance "
                            "role)") from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                raise FileNotFoundError(uri) from None
            if code == "NoSuchBucket":
                raise JobFailed(f"{where}: the bucket does not exist ({what} {uri}): create it, "
                                "or fix the lake root") from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                raise JobFailed(f"{where}: access refused for {what} {uri} ({code}): check the "
                                "credentials in the environment and the bucket's policy") from None
            raise JobFailed(f"{where}: {what} {uri} failed: {code or _one_line(exc)}") from None
        except BotoCoreError as exc:
            raise JobFailed(f"{where} does not answer ({what} {uri}): {_one_line(exc)}") from None

    def exists(self, uri: str) -> bool:
        # A missing bucket answers the listing with NoSuchBucket (a HEAD of the bucket would
        # need a permission that prefix-scoped policies do not grant).
        return self._object(uri) or self.is_dir(uri)

    def _object(self, uri: str) -> bool:
        if not self._key(uri):
            return False  # the bucket's root is a folder
        try:
            self._call("looking up", uri, lambda: self.client.head_object(
                Bucket=self.authority, Key=self._key(uri)))
            return True
        except FileNotFoundError:
            return False

    def is_dir(self, uri: str) -> bool:
        prefix = self._key(uri).rstrip("/") + "/" if self._key(uri) else ""
        answer = self._call("listing", uri, lambda: self.client.list_objects_v2(
            Bucket=self.authority, Prefix=prefix, MaxKeys=1))
        return answer.get("KeyCount", 0) > 0

    def names(self, uri: str) -> list[str]:
        prefix = self._key(uri).rstrip("/") + "/" if self._key(uri) else ""
        names: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.authority, Prefix=prefix, Delimiter="/")
        for page in self._call("listing", uri, lambda: list(pages)):
            names += [c["Prefix"][len(prefix):].rstrip("/") for c in page.get("CommonPrefixes", [])]
            names += [o["Key"][len(prefix):] for o in page.get("Contents", [])]
        return [n for n in names if n]

    def read(self, uri: str) -> bytes:
        return self._call("reading", uri, lambda: self.client.get_object(
            Bucket=self.authority, Key=self._key(uri))["Body"].read())

    def write(self, uri: str, data: bytes) -> None:
        # One PUT: S3 shows the whole new object or the old one, never a part.
        self._call("writing", uri, lambda: self.client.put_object(
            Bucket=self.authority, Key=self._key(uri), Body=data))

    def create(self, uri: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        def put() -> bool:
            for attempt in range(4):
                try:
                    # A conditional PUT: S3 refuses it when the key exists (412), atomically.
                    self.client.put_object(Bucket=self.authority, Key=self._key(uri), Body=data,
                                           IfNoneMatch="*")
                    return True
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code")
                    if code == "ConditionalRequestConflict" and attempt < 3:
                        continue  # raced a delete of that key: ask again
                    if code in ("PreconditionFailed", "412"):
                        # A retried PUT whose first try was applied finds its own content.
                        return self.read(uri) == data
                    raise
            return False
        return self._call("publishing", uri, put)

    def delete(self, uri: str, recursive: bool) -> None:
        key = self._key(uri)
        keys = [key]
        if recursive:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.authority, Prefix=key.rstrip("/") + "/")
            keys += [o["Key"] for page in self._call("listing", uri, lambda: list(pages))
                     for o in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            answer = self._call("deleting", uri, lambda: self.client.delete_objects(
                Bucket=self.authority, Delete={"Objects": batch, "Quiet": True}))
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise JobFailed(f"S3 bucket {self.authority}: deleting {uri} left "
                                f"{len(answer['Errors'])} object(s), e.g. {first.get('Key')} "
                                f"({first.get('Code')})")

    def delta_options(self) -> dict[str, str]:
        options = {"AWS_REGION": self.region}
        if self.endpoint:
            options["AWS_ENDPOINT_URL"] = self.endpoint
            if self.endpoint.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if self.path_style:
            options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        names = {"aws_access_key_id": "AWS_ACCESS_KEY_ID", "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
                 "aws_session_token": "AWS_SESSION_TOKEN"}
        options.update({names[k]: v for k, v in self._credentials().items()})
        return options


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
