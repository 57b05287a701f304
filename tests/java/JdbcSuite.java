// Exercises the PostgreSQL JDBC driver through the gateway. Prints one line per check;
// the Rust test asserts them. Any exception fails the program.
import java.io.StringReader;
import java.sql.*;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class JdbcSuite {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        String user = args[1];
        String password = args[2];
        try (Connection c = DriverManager.getConnection(url, user, password)) {
            try (Statement s = c.createStatement()) {
                s.execute("create table jdbc_t (id int primary key, name text, data bytea)");
                try (ResultSet rs = s.executeQuery("select current_user, 40 + 2")) {
                    rs.next();
                    System.out.println("simple " + rs.getString(1) + " " + rs.getInt(2));
                }
            }
            // Prepared with binary transfer: after prepareThreshold the driver uses a named
            // server-side statement and binary results.
            try (PreparedStatement p = c.prepareStatement("select ?::int + 1, ?::bytea")) {
                int last = 0;
                byte[] bytes = null;
                for (int i = 0; i < 10; i++) {
                    p.setInt(1, i);
                    p.setBytes(2, new byte[] {1, 2, (byte) i});
                    try (ResultSet rs = p.executeQuery()) {
                        rs.next();
                        last = rs.getInt(1);
                        bytes = rs.getBytes(2);
                    }
                }
                System.out.println("prepared " + last + " " + bytes.length + " " + bytes[2]);
            }
            // Batch.
            try (PreparedStatement p = c.prepareStatement("insert into jdbc_t values (?, ?, ?)")) {
                for (int i = 0; i < 1000; i++) {
                    p.setInt(1, i);
                    p.setString(2, "name " + i);
                    p.setBytes(3, new byte[] {(byte) i});
                    p.addBatch();
                }
                int[] counts = p.executeBatch();
                System.out.println("batch " + counts.length);
            }
            // Fetch size: the driver reads the result in chunks through a suspended portal.
            c.setAutoCommit(false);
            try (PreparedStatement p = c.prepareStatement("select id from jdbc_t order by id")) {
                p.setFetchSize(50);
                int n = 0;
                long sum = 0;
                try (ResultSet rs = p.executeQuery()) {
                    while (rs.next()) {
                        n++;
                        sum += rs.getInt(1);
                    }
                }
                System.out.println("fetch " + n + " " + sum);
            }
            c.commit();
            // Savepoint.
            try (Statement s = c.createStatement()) {
                s.execute("update jdbc_t set name = 'kept' where id = 1");
                Savepoint sp = c.setSavepoint();
                s.execute("update jdbc_t set name = 'discarded' where id = 2");
                c.rollback(sp);
                c.commit();
                try (ResultSet rs = s.executeQuery("select string_agg(name, ',' order by id) from jdbc_t where id in (1, 2)")) {
                    rs.next();
                    System.out.println("savepoint " + rs.getString(1));
                }
            }
            c.setAutoCommit(true);
            // COPY in and out.
            CopyManager copy = c.unwrap(PGConnection.class).getCopyAPI();
            long in = copy.copyIn("copy jdbc_t (id, name) from stdin with (format csv)",
                new StringReader("5000,copied\n5001,copied\n"));
            java.io.StringWriter out = new java.io.StringWriter();
            long outRows = copy.copyOut("copy (select id from jdbc_t where name = 'copied' order by id) to stdout", out);
            System.out.println("copy " + in + " " + outRows + " " + out.toString().trim().replace('\n', ','));
            // Query timeout: the driver sends a cancel request.
            try (Statement s = c.createStatement()) {
                s.setQueryTimeout(1);
                long start = System.nanoTime();
                try {
                    s.execute("select pg_sleep(30)");
                    System.out.println("timeout none");
                } catch (SQLException e) {
                    long ms = (System.nanoTime() - start) / 1_000_000;
                    System.out.println("timeout " + e.getSQLState() + " " + (ms < 10_000));
                }
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select 'alive'")) {
                rs.next();
                System.out.println("after " + rs.getString(1));
            }
        }
    }
}
