#!/bin/bash
# Starts MariaDB 10.11 listening on all addresses.
# Env: MY_PASSWORD (for user app@%, default "secret"), MY_DATABASE (default "app"),
# MY_START_DELAY (seconds to sleep before starting; default 0).
set -euo pipefail
sleep "${MY_START_DELAY:-0}"
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null 2>&1
cat >/tmp/init.sql <<SQL
CREATE DATABASE IF NOT EXISTS \`${MY_DATABASE:-app}\`;
CREATE USER 'app'@'%' IDENTIFIED BY '${MY_PASSWORD:-secret}';
GRANT ALL ON *.* TO 'app'@'%';
FLUSH PRIVILEGES;
SQL
chown mysql /tmp/init.sql
echo "podinit-test-db: mariadb ready to start"
exec mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=0.0.0.0 --port=3306 --skip-name-resolve \
  --innodb-flush-log-at-trx-commit=0 --init-file=/tmp/init.sql
