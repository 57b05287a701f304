// The result seam through the PostgreSQL JDBC driver: a test-only rewriter (see
// tests/tests/rewrite_seam.rs) upper-cases text, adds 1000 to int4 and numbers the rows of
// each result in its "nth" column. Prints one line per check; the Rust test asserts them.
import java.io.StringWriter;
import java.sql.*;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

public class JdbcRewrite {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2])) {
            c.setAutoCommit(false);
            String sql = "select 'v'::text as v, g as n, g::text as nth from generate_series(1, 25) g /*bump*/";
            // Twice: the second run uses the driver's named server-side statement.
            for (int round = 0; round < 2; round++) {
                try (PreparedStatement p = c.prepareStatement(sql)) {
                    p.setFetchSize(10);
                    int rows = 0;
                    StringBuilder wrong = new StringBuilder();
                    try (ResultSet rs = p.executeQuery()) {
                        while (rs.next()) {
                            rows++;
                            if (!rs.getString(1).equals("V") || rs.getInt(2) != rows + 1000
                                    || !rs.getString(3).equals(Integer.toString(rows))) {
                                wrong.append(" ").append(rs.getString(1)).append("/")
                                    .append(rs.getInt(2)).append("/").append(rs.getString(3));
                            }
                        }
                    }
                    System.out.println("fetch " + rows + (wrong.length() == 0 ? " ok" : wrong));
                }
            }
            c.commit();
            CopyManager copy = ((PGConnection) c).getCopyAPI();
            StringWriter out = new StringWriter();
            copy.copyOut("copy (select 'abc'::text union all select 'def') to stdout /*bump*/", out);
            System.out.println("copy " + out.toString().trim().replace("\n", ","));
        }
    }
}
