#!/usr/bin/env bash
# Fetch the jars of the YARN mini-cluster that tests/yarn.py starts, from Maven Central, into
# .sparkml/yarn-jars/ (or $1). A no-op when the jars of this exact list are already there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/.sparkml/yarn-jars}"

# 3.5.0 is the Hadoop of pyspark's hadoop-client-api jar. The minicluster jar is shaded but
# still needs, at run time, what its pom leaves out: JUnit 5's API (MiniYARNCluster makes its
# work dir through GenericTestUtils), Bouncy Castle (the ResourceManager's proxy CA) and,
# for a readable log, an SLF4J binding.
POM='<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.sparkml</groupId><artifactId>yarn-minicluster-jars</artifactId><version>0</version>
  <dependencies>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-client-minicluster</artifactId><version>3.5.0</version></dependency>
    <dependency><groupId>org.junit.jupiter</groupId><artifactId>junit-jupiter-api</artifactId><version>5.13.3</version></dependency>
    <dependency><groupId>org.bouncycastle</groupId><artifactId>bcpkix-jdk18on</artifactId><version>1.82</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>'

mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9  # two test runs starting together fetch once
# The pom is kept beside the jars, written last: it marks a complete fetch of this list.
if [[ -f "$DEST/pom.xml" && "$(cat "$DEST/pom.xml")" == "$POM" ]]; then
  exit 0
fi
BUILD="$(mktemp -d)"
trap 'rm -rf "$BUILD"' EXIT
printf '%s\n' "$POM" > "$BUILD/pom.xml"
rm -f "$DEST"/*.jar "$DEST/pom.xml"
mvn -q -B -f "$BUILD/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
  -DoutputDirectory="$DEST" >&2  # even -q prints colour codes on stdout
printf '%s\n' "$POM" > "$DEST/pom.xml"
