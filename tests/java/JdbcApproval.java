// A write through the PostgreSQL JDBC driver that waits for a manager's approval (see
// tests/tests/approvals.rs): prints the update count once the gateway lets it run.
import java.sql.*;

public class JdbcApproval {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2]);
             PreparedStatement p = c.prepareStatement("update orders set status = ? where id = ?")) {
            p.setString(1, "approved-jdbc");
            p.setInt(2, 13);
            System.out.println("updated " + p.executeUpdate());
        }
    }
}
